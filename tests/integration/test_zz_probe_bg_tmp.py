import time
from tests.processes import running, worker, wait_for


async def test_probe(settings, database):
    s = settings.model_copy(update={"shutdown_timeout": 5.0})
    t = time.monotonic()
    with running(worker("autorestart_worker", s)) as (w,):

        async def up():
            return await database.leases.count_documents({}) > 0

        await wait_for(up, timeout=30)
        print("startup", time.monotonic() - t)
        t = time.monotonic()
        code = w.terminate()
        print("terminate", code, time.monotonic() - t)
        print(w.process.stderr.read().decode()[-3000:])
