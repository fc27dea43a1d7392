#!/usr/bin/env python3
"""Call the deployed API with boto3's `mwaa-serverless` client, signed for `execute-api`.

API Gateway's IAM authorization verifies a SigV4 signature whose credential
scope names the service `execute-api`. The `mwaa-serverless` client signs for
the service's own signing name, `airflow-serverless`, so API Gateway would
refuse it (403). The smallest change is one event handler that sets the
signing name just before botocore signs:

    client = boto3.client("mwaa-serverless", region_name=REGION, endpoint_url=API_URL)
    sign_for_execute_api(client)
    client.stop_workflow_run(WorkflowArn=ARN, RunId=RUN_ID)

Usage:
    python tools/sign_execute_api.py --url API_URL --region REGION --workflow-arn ARN --run-id ID [--get]
    python tools/sign_execute_api.py --self-test

--self-test runs, offline, against a local HTTP endpoint that verifies SigV4
the way API Gateway does, recomputed here independently of botocore (hashlib
and hmac) with known test credentials for service `execute-api`: the
re-signed client is accepted, an unchanged client (scope `airflow-serverless`),
a wrong secret and a tampered body are rejected. It ends with
`N passed, M failed` and exits 1 on any failure.

Needs botocore >= 1.44.5 (the mwaa-serverless model); `make sign-check` runs
it with .venv-sam/sign/bin/python.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

EXECUTE_API = "execute-api"


def sign_for_execute_api(client) -> None:
    """Make a botocore client sign every request for service `execute-api`.

    botocore emits `before-sign` right before it signs; a `signing_name` in the
    request's signing context overrides the model's (airflow-serverless).
    """

    def use_execute_api(request, **_):
        request.context.setdefault("signing", {})["signing_name"] = EXECUTE_API

    client.meta.events.register(f"before-sign.{client.meta.service_model.service_id.hyphenize()}", use_execute_api)


# --------------------------------------------------------------------------
# A SigV4 verifier, written from the specification, for the self-test.


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_uri(path: str) -> str:
    # Every service but S3 encodes each path segment twice: once on the wire,
    # once more in the canonical request.
    return "/".join(quote(quote(seg, safe="-_.~"), safe="-_.~%") for seg in path.split("/")) or "/"


def _canonical_query(query: str) -> str:
    pairs = []
    for part in filter(None, query.split("&")):
        k, _, v = part.partition("=")
        pairs.append((quote(k, safe="-_.~%"), quote(v, safe="-_.~%")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


class SignatureError(Exception):
    pass


def verify_sigv4(method: str, target: str, headers: dict[str, str], body: bytes, *, access_key: str, secret_key: str,
                 region: str, service: str = EXECUTE_API, now: dt.datetime | None = None) -> str:
    """Raise SignatureError unless the request is signed for (access_key, region, service).

    headers: lowercase names. Returns the credential scope's service on success.
    """
    auth = headers.get("authorization", "")
    algo, _, rest = auth.partition(" ")
    if algo != "AWS4-HMAC-SHA256":
        raise SignatureError(f"not a SigV4 request: {auth[:40]!r}")
    fields = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
    try:
        akid, date, scope_region, scope_service, terminator = fields["Credential"].split("/")
        signed_headers = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError) as e:
        raise SignatureError(f"malformed Authorization header: {e}") from e
    if akid != access_key:
        raise SignatureError(f"unknown access key {akid}")
    if scope_service != service:
        raise SignatureError(f"Credential should be scoped to correct service: '{service}' (got '{scope_service}')")
    if scope_region != region or terminator != "aws4_request":
        raise SignatureError(f"credential scope {fields['Credential']} is not for {region}")
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date) or "host" not in signed_headers:
        raise SignatureError("x-amz-date / host must be signed and match the scope date")
    when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    if abs((now - when).total_seconds()) > 300:
        raise SignatureError("signature expired or from the future")
    payload_hash = hashlib.sha256(body).hexdigest()
    if headers.get("x-amz-content-sha256", payload_hash) != payload_hash:
        raise SignatureError("x-amz-content-sha256 does not match the body")
    missing = [h for h in signed_headers if h not in headers]
    if missing:
        raise SignatureError(f"signed headers missing from the request: {missing}")
    url = urlsplit(target)
    canonical_headers = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed_headers)
    canonical_request = "\n".join([
        method, _canonical_uri(url.path or "/"), _canonical_query(url.query), canonical_headers,
        ";".join(signed_headers), payload_hash,
    ])
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("The request signature we calculated does not match the signature you provided.")
    return scope_service


# --------------------------------------------------------------------------
# The self-test: a local stand-in for API Gateway's IAM authorizer.

TEST_ACCESS_KEY = "AKIDEXECUTEAPITEST"
TEST_SECRET_KEY = "execute-api-test-secret-key/0123456789"
TEST_REGION = "us-east-1"
ARN = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/nightly-etl-a1B2c3D4e5"


class _Verifier(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.server.tamper:  # type: ignore[attr-defined]
            body = body.replace(b"manual", b"MANUAL")
        try:
            service = verify_sigv4("POST", self.path, headers, body, access_key=TEST_ACCESS_KEY,
                                   secret_key=TEST_SECRET_KEY, region=TEST_REGION)
            self.server.seen.append(("accepted", service))  # type: ignore[attr-defined]
            req = json.loads(body)
            op = headers.get("x-amz-target", "").split(".")[-1]
            if op == "StopWorkflowRun":
                out = {"WorkflowArn": req["WorkflowArn"], "RunId": req["RunId"], "Status": "STOPPING"}
            else:
                out = {"WorkflowArn": req["WorkflowArn"], "RunId": req["RunId"],
                       "RunDetail": {"RunState": "STOPPING"}}
            self._answer(200, out, {})
        except SignatureError as e:
            self.server.seen.append(("rejected", str(e)))  # type: ignore[attr-defined]
            self._answer(403, {"message": str(e)}, {"x-amzn-ErrorType": "InvalidSignatureException"})

    def _answer(self, status: int, doc: dict, extra: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


def self_test() -> int:
    import botocore
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ClientError

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Verifier)
    server.seen = []  # type: ignore[attr-defined]
    server.tamper = False  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    passed = failed = 0

    def report(ok: bool, name: str, detail: str = "") -> None:
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {name}{'' if ok else ': ' + detail}")

    def client(secret: str = TEST_SECRET_KEY, resign: bool = True):
        session = botocore.session.get_session()
        c = session.create_client(
            "mwaa-serverless", region_name=TEST_REGION, endpoint_url=url,
            aws_access_key_id=TEST_ACCESS_KEY, aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        if resign:
            sign_for_execute_api(c)
        return c

    version = tuple(int(x) for x in botocore.__version__.split(".")[:3])
    report(version >= (1, 44, 5) and "mwaa-serverless" in botocore.session.get_session().get_available_services(),
           f"botocore {botocore.__version__} has the mwaa-serverless model (>= 1.44.5)")
    report(client(resign=False).meta.service_model.signing_name == "airflow-serverless",
           "the model signs as airflow-serverless")

    def call(c, op: str = "stop"):
        server.seen.clear()  # type: ignore[attr-defined]
        try:
            if op == "stop":
                out = c.stop_workflow_run(WorkflowArn=ARN, RunId="manual-2026-11-21")
            else:
                out = c.get_workflow_run(WorkflowArn=ARN, RunId="manual-2026-11-21")
            return out, list(server.seen)  # type: ignore[attr-defined]
        except ClientError as e:
            return e, list(server.seen)  # type: ignore[attr-defined]

    out, seen = call(client(resign=False))
    report(isinstance(out, ClientError) and out.response["ResponseMetadata"]["HTTPStatusCode"] == 403
           and seen and "airflow-serverless" in seen[0][1],
           "an unchanged client (scope airflow-serverless) is rejected with 403", f"{out!r} {seen}")

    out, seen = call(client())
    report(isinstance(out, dict) and out.get("Status") == "STOPPING" and seen == [("accepted", EXECUTE_API)],
           "sign_for_execute_api(client): StopWorkflowRun signed for execute-api is accepted", f"{out!r} {seen}")

    out, seen = call(client(), "get")
    report(isinstance(out, dict) and out.get("RunDetail", {}).get("RunState") == "STOPPING"
           and seen == [("accepted", EXECUTE_API)],
           "sign_for_execute_api(client): GetWorkflowRun is accepted too", f"{out!r} {seen}")

    out, seen = call(client(secret="not-the-secret"))
    report(isinstance(out, ClientError) and seen and "does not match" in seen[0][1],
           "the verifier recomputes the signature: a wrong secret key is rejected", f"{out!r} {seen}")

    server.tamper = True  # type: ignore[attr-defined]
    out, seen = call(client())
    server.tamper = False  # type: ignore[attr-defined]
    report(isinstance(out, ClientError) and seen and "does not match" in seen[0][1],
           "the verifier covers the body: a changed body is rejected", f"{out!r} {seen}")

    server.shutdown()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--self-test", action="store_true", help="verify the signing against a local SigV4 verifier")
    ap.add_argument("--url", help="the stack's ApiUrl output")
    ap.add_argument("--region", help="the stack's region (the signature's region)")
    ap.add_argument("--workflow-arn")
    ap.add_argument("--run-id")
    ap.add_argument("--get", action="store_true", help="GetWorkflowRun instead of StopWorkflowRun")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if not (args.url and args.region and args.workflow_arn and args.run_id):
        ap.error("--url, --region, --workflow-arn and --run-id are required (or --self-test)")
    import boto3

    client = boto3.client("mwaa-serverless", region_name=args.region, endpoint_url=args.url)
    sign_for_execute_api(client)
    if args.get:
        out = client.get_workflow_run(WorkflowArn=args.workflow_arn, RunId=args.run_id)
    else:
        out = client.stop_workflow_run(WorkflowArn=args.workflow_arn, RunId=args.run_id)
    out.pop("ResponseMetadata", None)
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
