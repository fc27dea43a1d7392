mod api;
mod events;
mod finalizer;
mod hostile;
mod safety_net;
