mod airflow;
mod authz;
mod lambda;
mod local_stack;
mod sam_local;
mod sign_execute_api;
