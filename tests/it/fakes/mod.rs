mod finalize;
mod pacing;
mod reconcile;
mod stop;
mod verdict;
