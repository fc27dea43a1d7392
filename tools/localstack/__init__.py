"""The local stack behind `make local`, `make sam-local`, `make demo` and `make seed`, by job.

    common      the names every part shares (region, account, table, cluster)
                and the two ways it talks to the user: `say`, `StackError`
    aws         the local AWS side: clients, and creating the run table,
                the worker cluster and the task definition in moto
    settings    what the environment may change (LOCAL_STREAM_MAPPING,
                LOCAL_RECONCILE_PERIOD, LOCAL_RECONCILE_AFTER_MS), checked first
    supervisor  the processes: moto, `cargo lambda watch`, the stream mapping,
                the reconciler's schedule; stop signals and shutdown (`Stack`)
    reconciler  the local schedule of `stop-reconciler` (`ReconcilerLoop`)
    seed        runs to stop: `seed_run`, its argument checks, and the AWS CLI
                lines that stop one
    demo        the guided tour of `make demo`
    sam         `make sam-local`: the same stack with the functions behind
                `sam local start-api` / `start-lambda` in Lambda containers
                (`SamStack`), and finding and removing its containers

tools/local_stack.py is the command line (`up`, `demo`, `seed`).
"""
