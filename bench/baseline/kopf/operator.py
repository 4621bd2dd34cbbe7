"""A plain kopf operator for AiApps: the Python baseline of dataforest-bench.

It does what a typical kopf author would write for the same job, and no more:

- on create (and on resume after a restart) of an AiApp without ``status.id``, read the
  credentials Secret, sign and call ``submit``, and write ``phase``/``id`` to status;
- a daemon per live app polls ``getDetail`` and writes every phase change to status;
- on deletion of an AiApp whose app still runs, ``kill`` it (kopf's own finalizer,
  named ``dataforest.dev/cleanup``).

What it deliberately lacks, unlike dataforest-operator: no marker written before a
submit, no recovery through ``getList`` after a lost answer (a retried submit can start
a second GPU job), no leader election (kopf runs standalone), no metrics.

Process contract, shared by every baseline (started with no arguments):

- ``KUBECONFIG``: the kubeconfig of the cluster (kopf logs in with the kubernetes client);
- ``WATCH_NAMESPACE``: the only namespace handled;
- ``POD_NAME`` / ``POD_NAMESPACE``: name the reporting instance of Events;
- ``METRICS_ADDRESS`` (``host:port``): kopf's liveness endpoint is served there at
  ``/healthz``; there is no ``/metrics`` (kopf has none);
- ``WORKERS`` (default 0, kopf's own default: no limit): ``settings.queueing.worker_limit``,
  kopf's bound on AiApps handled at once, and the threads for Kubernetes calls (32 when
  0). The bench runs kopf as its author would, on kopf's defaults: a limit of 16 would
  cap it near 3 AiApps a second (see ``configure``);
- ``WORKER_IDLE_TIMEOUT`` (seconds, optional): ``settings.queueing.idle_timeout``, how
  long an idle per-AiApp worker keeps its slot (kopf's default 5 s), see ``configure``;
- ``LOG_LEVEL`` (default ``WARNING``): Python logging level.

Run it as ``python -P operator.py`` (what hack/baseline-kopf.sh's wrapper does): without
``-P`` this file's folder comes first on ``sys.path`` and its name hides the standard
library's ``operator`` module.

Once kopf has started its watches it prints one line on stdout (and stderr) starting
with ``dataforest-kopf-baseline ready``.
"""

import asyncio
import base64
import concurrent.futures
import datetime
import functools
import hashlib
import hmac
import json
import logging
import os
import random
import re
import sys
import time
import urllib.parse

import aiohttp
import kopf
import kubernetes

GROUP = "dataforest.dev"
VERSION = "v1alpha1"
PLURAL = "aiapps"
FINALIZER = "dataforest.dev/cleanup"
DEFAULT_ENDPOINT = "https://df.apigw.ntruss.com"

# The same polling as dataforest-operator's defaults (src/controller/mod.rs: poll_min
# 2 s, poll_ceiling 60 s; src/plan.rs doubles; src/controller/mod.rs adds up to a
# quarter of jitter to a backed-off interval), so that the bench compares operators,
# not polling rates.
POLL_MIN = 2.0
POLL_CEILING = 60.0

# Answers are small; a slow gateway should not hold a worker for long.
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)

TERMINAL_PHASES = {"Succeeded", "Failed", "Killed"}
TERMINAL_STATES = {"FINISHED", "FAILED", "KILLED"}

WORKERS = int(os.environ.get("WORKERS", "0"))

# The kubernetes client is synchronous: its calls run in these threads so that they do
# not stop the event loop that every handler and daemon share.
kube_threads = concurrent.futures.ThreadPoolExecutor(
    max_workers=WORKERS or 32, thread_name_prefix="kube"
)
http: aiohttp.ClientSession | None = None


class ApiError(Exception):
    """A Data Forest call that did not succeed; ``retryable`` says whether to try again."""

    def __init__(self, operation, status, message, retryable):
        super().__init__(f"{operation}: HTTP {status}: {message}")
        self.status = status
        self.retryable = retryable


# --- Kubernetes -----------------------------------------------------------------------


async def in_thread(fn, *args, **kwargs):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(kube_threads, functools.partial(fn, *args, **kwargs))


async def read_credentials(namespace, spec):
    """The access key, secret key and endpoint from the AiApp's Secret (default key names)."""
    secret_name = (spec.get("credentials") or {}).get("secretName")
    if not secret_name:
        raise kopf.PermanentError("spec.credentials.secretName is not set")
    core = kubernetes.client.CoreV1Api()
    try:
        secret = await in_thread(core.read_namespaced_secret, secret_name, namespace)
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            raise kopf.TemporaryError(f"Secret {namespace}/{secret_name} not found", delay=10)
        raise kopf.TemporaryError(f"reading Secret {namespace}/{secret_name}: HTTP {e.status}", delay=10)
    data = secret.data or {}

    def value(key):
        raw = data.get(key)
        return base64.b64decode(raw).decode() if raw else None

    access_key, secret_key = value("accessKey"), value("secretKey")
    if not access_key or not secret_key:
        # Name the keys, never their values.
        raise kopf.TemporaryError(
            f"Secret {namespace}/{secret_name} lacks accessKey or secretKey", delay=10
        )
    return {
        "access_key": access_key,
        "secret_key": secret_key,
        "endpoint": (value("endpoint") or DEFAULT_ENDPOINT).rstrip("/"),
    }


async def patch_status(namespace, name, status):
    """Merge-patches the status subresource (used by the daemon, which kopf does not patch for)."""
    api = kubernetes.client.CustomObjectsApi()
    await in_thread(
        api.patch_namespaced_custom_object_status,
        GROUP, VERSION, namespace, PLURAL, name, {"status": status},
    )


# --- Data Forest ----------------------------------------------------------------------


def sign(method, path, timestamp, access_key, secret_key):
    """NCP signature v2: Base64 HMAC-SHA256 of "METHOD path\\ntimestamp\\naccessKey"."""
    message = f"{method} {path}\n{timestamp}\n{access_key}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def call(creds, operation, body):
    """One signed POST to /api/v2/aiapps/<operation>; the decoded answer, or ApiError."""
    base = urllib.parse.urlsplit(creds["endpoint"])
    # The signature covers the path after the host, so an endpoint with a path keeps it.
    path = f"{base.path.rstrip('/')}/api/v2/aiapps/{operation}"
    url = urllib.parse.urlunsplit((base.scheme, base.netloc, path, "", ""))
    timestamp = str(int(time.time() * 1000))
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        "x-ncp-apigw-timestamp": timestamp,
        "x-ncp-iam-access-key": creds["access_key"],
        "x-ncp-apigw-signature-v2": sign("POST", path, timestamp, creds["access_key"], creds["secret_key"]),
    }
    try:
        # No redirects: they would carry the signed headers to another host.
        async with http.post(url, data=json.dumps(body), headers=headers, allow_redirects=False) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        raise ApiError(operation, None, type(e).__name__, retryable=True)
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        answer = None
    if status == 200 and isinstance(answer, dict) and answer.get("success") is not False:
        return answer
    if isinstance(answer, dict):
        error = answer.get("error")
        message = (error or {}).get("message") if isinstance(error, dict) else answer.get("message")
    else:
        message = "an answer that is not JSON"
    retryable = status in (401, 429) or status >= 500
    raise ApiError(operation, status, message or "no message", retryable)


def name_prefix(spec, name):
    """spec.namePrefix, or the AiApp's name cut to what the API takes (2-8 of [a-z0-9])."""
    if spec.get("namePrefix"):
        return spec["namePrefix"]
    prefix = re.sub(r"[^a-z0-9]", "", name.lower())[:8]
    return prefix if len(prefix) >= 2 else (prefix + "app")[:8]


def submit_body(spec, name):
    docker = spec["docker"]
    body_docker = {"image": docker["image"], "command": docker["command"]}
    for key in ("args", "env", "exposeTcpPorts", "workdir"):
        if docker.get(key):
            body_docker[key] = docker[key]
    return {
        "aiWorkspaceId": spec["aiWorkspaceId"],
        "namePrefix": name_prefix(spec, name),
        "queueName": spec.get("queueName") or "gpu",
        "data": spec.get("data") or {"input": [], "output": []},
        "docker": body_docker,
        "resource": spec.get("resource") or {},
    }


def phase_of(detail):
    """The AiApp phase for a getDetail answer: YARN's state, and finalStatus once it ended."""
    state = detail.get("state") or ""
    if state in TERMINAL_STATES:
        final = detail.get("finalStatus") or ""
        if final == "SUCCEEDED":
            return "Succeeded"
        if final == "KILLED" or state == "KILLED":
            return "Killed"
        return "Failed"
    if state == "RUNNING":
        return "Running"
    return "Accepted"


def status_from(answer):
    """The status fields an answer fills; absent or empty ones are left out."""
    fields = {
        "id": answer.get("id"),
        "name": answer.get("name"),
        "appId": answer.get("appId"),
        "accountName": answer.get("accountName"),
        "queueName": answer.get("queueName"),
        "state": answer.get("state"),
        "finalStatus": answer.get("finalStatus"),
    }
    return {k: v for k, v in fields.items() if v}


# --- Handlers -------------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_):
    global http
    settings.persistence.finalizer = FINALIZER
    # Handler progress and the last handled spec live in annotations: the CRD's status
    # schema has no room for kopf's own fields (the apiserver would prune them).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # kopf's per-AiApp workers linger settings.queueing.idle_timeout (5 s by default)
    # after their last event, holding a slot of worker_limit meanwhile: with a limit the
    # throughput is about WORKERS / idle_timeout AiApps a second. WORKER_IDLE_TIMEOUT
    # (seconds) changes it; WORKERS=0 lifts the limit, kopf's own default.
    settings.queueing.worker_limit = WORKERS or None
    if os.environ.get("WORKER_IDLE_TIMEOUT"):
        settings.queueing.idle_timeout = float(os.environ["WORKER_IDLE_TIMEOUT"])
    if WORKERS:
        settings.execution.max_workers = WORKERS
    settings.posting.reporting_component = "dataforest-kopf-baseline"
    settings.posting.reporting_instance = os.environ.get("POD_NAME", "dataforest-kopf-baseline")
    # Events only from explicit kopf.info/warn calls, as our operator posts them.
    settings.posting.loggers = False

    # kopf logged in already; the handlers' own client reads the same kubeconfig.
    kubernetes.config.load_kube_config()
    config = kubernetes.client.Configuration.get_default_copy()
    config.connection_pool_maxsize = max(WORKERS or 32, 10)
    kubernetes.client.Configuration.set_default(config)
    http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def submit(spec, status, name, namespace, body, patch, logger, **_):
    if status.get("id"):
        return  # submitted before; the daemon follows it
    creds = await read_credentials(namespace, spec)
    try:
        answer = await call(creds, "submit", submit_body(spec, name))
    except ApiError as e:
        if e.retryable:
            # Without a marker nothing tells whether the lost call made an app: trying
            # again may make a second one. That is the baseline's known weakness.
            raise kopf.TemporaryError(str(e), delay=10)
        patch.status.update({"phase": "Failed", "message": str(e)})
        kopf.warn(body, reason="SubmitFailed", message=str(e))
        return
    if not answer.get("id"):
        raise kopf.TemporaryError("submit answered without an id", delay=10)
    fields = status_from(answer)
    fields["phase"] = "Accepted"
    fields["message"] = f"submitted as {answer['id']}"
    patch.status.update(fields)
    kopf.info(body, reason="Submitted", message=f"app {answer['id']} submitted")
    logger.info("submitted %s as %s", name, answer["id"])


def needs_polling(status, **_):
    return bool(status.get("id")) and status.get("phase") not in TERMINAL_PHASES


# cancellation_backoff: kopf sets `stopped` and gives the daemon that long to return
# before cancelling it (cancellation_timeout); without them kopf calls a daemon that is
# returning anyway "orphaned", and waits on it at shutdown.
@kopf.daemon(GROUP, VERSION, PLURAL, when=needs_polling, cancellation_backoff=1.0, cancellation_timeout=1.0)
async def follow(spec, status, name, namespace, body, stopped, logger, **_):
    """Polls getDetail until the app ends, doubling the wait while nothing changes.

    It waits on ``stopped`` rather than sleeping, so kopf's stop (deletion, shutdown,
    the filter no longer matching) wakes it between polls and never cuts one short.
    """
    app_id = status["id"]
    phase = status.get("phase")
    creds = await read_credentials(namespace, spec)
    interval = POLL_MIN
    await stopped.wait(POLL_MIN)
    while not stopped:
        try:
            detail = await call(creds, "getDetail", {"id": app_id})
        except ApiError as e:
            logger.warning("getDetail %s: %s", app_id, e)
            if e.status == 401:
                creds = await read_credentials(namespace, spec)  # maybe rotated
            detail = None
        new_phase = phase_of(detail) if detail is not None else phase
        if new_phase != phase:
            fields = status_from(detail)
            fields["phase"] = new_phase
            fields["message"] = f"app {app_id}: state {detail.get('state')}, final status {detail.get('finalStatus')}"
            if new_phase in ("Failed", "Killed"):
                kopf.warn(body, reason=new_phase, message=fields["message"])
            else:
                kopf.info(body, reason=new_phase, message=fields["message"])
            await patch_status(namespace, name, fields)
            phase = new_phase
            if phase in TERMINAL_PHASES:
                return
            wait, interval = POLL_MIN, POLL_MIN
        else:
            interval = min(interval * 2, POLL_CEILING)
            wait = interval * (1 + random.random() / 4)
        await stopped.wait(wait)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def kill(spec, status, name, namespace, body, logger, **_):
    app_id = status.get("id")
    if not app_id or status.get("phase") in TERMINAL_PHASES:
        return
    if spec.get("deletionPolicy") == "Orphan":
        return
    creds = await read_credentials(namespace, spec)
    try:
        await call(creds, "kill", {"id": app_id})
    except ApiError as e:
        if e.status == 404:
            return  # Data Forest no longer knows it: nothing to kill
        raise kopf.TemporaryError(str(e), delay=5)
    logger.info("killed %s (%s)", app_id, name)


# --- Process --------------------------------------------------------------------------


async def main():
    namespace = os.environ["WATCH_NAMESPACE"]
    address = os.environ.get("METRICS_ADDRESS")
    liveness = f"http://{address}/healthz" if address else None
    ready = asyncio.Event()

    async def announce():
        await ready.wait()
        line = (
            f"dataforest-kopf-baseline ready: namespace={namespace} workers={WORKERS} "
            f"liveness={liveness or 'off'} at {datetime.datetime.now(datetime.UTC).isoformat()}"
        )
        print(line, flush=True)
        print(line, file=sys.stderr, flush=True)

    announcing = asyncio.create_task(announce())
    try:
        await kopf.operator(
            standalone=True,
            namespaces=[namespace],
            liveness_endpoint=liveness,
            ready_flag=ready,
        )
    finally:
        announcing.cancel()
        # Closed here, not in a kopf cleanup handler: those run while daemons may still
        # be polling through it.
        if http is not None:
            await http.close()


if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(main())
