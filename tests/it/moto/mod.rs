mod api;
mod finalizer;
mod hostile;
mod safety_net;
