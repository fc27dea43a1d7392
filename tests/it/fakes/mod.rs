mod finalize;
mod reconcile;
mod stop;
