mod api;
mod finalizer;
mod safety_net;
