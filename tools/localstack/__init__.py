"""The local stack behind `make local`, `make demo` and `make seed`, by job.

    common      the names every part shares (region, account, table, cluster)
                and the two ways it talks to the user: `say`, `StackError`
    aws         the local AWS side: clients, and creating the run table,
                the worker cluster and the task definition in moto
    supervisor  the processes: moto, `cargo lambda watch`, the stream mapping;
                stop signals and shutdown (`Stack`)
    seed        runs to stop: `seed_run`, and the AWS CLI lines that stop one
    demo        the guided tour of `make demo`

tools/local_stack.py is the command line (`up`, `demo`, `seed`).
"""
