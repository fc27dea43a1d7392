mod finalize;
mod stop;
