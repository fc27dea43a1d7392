"""localdev: the project's local tools, one module per job.

The local stack behind `make local`, `make sam-local`, `make demo` and `make seed`:

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

    __main__    the command line: `python -m localdev up | demo | seed | sam-up`

The other tools, each run as `python -m localdev.NAME` or imported:

    stream_mapper     the local stand-in for Lambda's DynamoDB event source
                      mapping (filter, batches, partial batch failures)
    cfn_template      template.yaml as data (cfn-lint's decoder)
    moto_serial       moto's server, each request handled atomically
    sign_execute_api  boto3 signing for the deployed API (`execute-api`)
    check_bootstrap   the built bootstrap files are aarch64 ELF executables
    standin_image     the Lambda base image for `sam local`, or its Debian
                      stand-in (standard library only: `make sam-image` runs
                      it by path with the system python)

The package is installed (editable) into .venv/ by `make venv` and into
.venv-sam/ by `make sam-venv`; its tests are in tools/localdev/tests/.
"""
