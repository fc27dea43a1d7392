mod lambda;
mod local_stack;
mod sign_execute_api;
