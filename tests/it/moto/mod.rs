mod api;
mod finalizer;
