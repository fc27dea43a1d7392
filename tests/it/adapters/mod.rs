mod direct;
mod mock;
