"""Unit tests for the SQLite generation cache (pytest_aie.run.cache)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from pytest_aie.engines.base import Generation, Request, Sampling, Timings
from pytest_aie.errors import UsageError
from pytest_aie.run.cache import GenerationCache, engine_key
from pytest_aie.settings import CACHE_MODES

ENGINE = engine_key({"engine": "scripted", "model": "m", "revision": "abc"})


def req(text: str = "hi", **kwargs) -> Request:
    return Request(messages=({"role": "user", "content": text},), **kwargs)


def gen(text: str = "out", **kwargs) -> Generation:
    kwargs.setdefault("timings", Timings(e2e_s=1.5, ttft_s=0.1, tpot_s=0.01, batch_size=4))
    return Generation(text=text, prompt_tokens=3, completion_tokens=1, finish_reason="stop",
                      engine="scripted", model="m", **kwargs)


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


@pytest.fixture
def cache(tmp_path):
    c = GenerationCache(tmp_path / "sub" / "gen.sqlite")
    yield c
    c.close()


# --------------------------------------------------------------------------- round trip

def test_round_trip_marks_cached_and_clears_timings(cache):
    r, g = req(), gen(token_logprobs=[-0.5])
    cache.put_many(ENGINE, [r], [g])
    (got,) = cache.get_many(ENGINE, [r])
    assert got is not None
    assert got.cached is True
    assert got.timings == Timings()
    # everything else comes back unchanged
    expected = dataclasses.replace(g, cached=True, timings=Timings())
    assert got == expected
    assert cache.hits == 1 and cache.misses == 0


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\x00nul", "\u202eevil", "\U0001f600 emoji"])
def test_any_text_round_trips(tmp_path, text):
    """A lone surrogate (a model server's JSON can carry one), NUL or a bidi override in the
    output or the prompt is stored and comes back exactly, across connections."""
    r, g = req(f"prompt {text}"), gen(text)
    first = GenerationCache(tmp_path / "gen.sqlite")
    first.put_many(ENGINE, [r], [g])
    first.close()
    again = GenerationCache(tmp_path / "gen.sqlite")
    (back,) = again.get_many(ENGINE, [r])
    again.close()
    assert back is not None and back.text == text
    assert GenerationCache.key(ENGINE, r) != GenerationCache.key(ENGINE, req("prompt"))


def test_miss_returns_none_and_counts(cache):
    cache.put_many(ENGINE, [req("a")], [gen("A")])
    got = cache.get_many(ENGINE, [req("a"), req("b")])
    assert got[0] is not None and got[0].text == "A" and got[1] is None
    assert cache.hits == 1 and cache.misses == 1


def test_results_come_back_in_request_order(cache):
    requests = [req(str(i)) for i in range(10)]
    cache.put_many(ENGINE, requests, [gen(f"out{i}") for i in range(10)])
    got = cache.get_many(ENGINE, list(reversed(requests)))
    assert [g.text for g in got] == [f"out{i}" for i in reversed(range(10))]


def test_more_keys_than_one_query_chunk(cache):
    requests = [req(str(i)) for i in range(1203)]
    cache.put_many(ENGINE, requests[::2], [gen(f"o{i}") for i in range(0, 1203, 2)])
    got = cache.get_many(ENGINE, requests)
    assert [g.text if g else None for g in got] == [f"o{i}" if i % 2 == 0 else None
                                                    for i in range(1203)]


def test_empty_request_list(cache):
    assert cache.get_many(ENGINE, []) == []
    cache.put_many(ENGINE, [], [])


def test_same_run_store_keeps_timings_and_is_not_cached(tmp_path):
    store = GenerationCache(tmp_path / "run.sqlite", "on", same_run=True)
    g = gen()
    store.put_many(ENGINE, [req()], [g])
    (got,) = store.get_many(ENGINE, [req()])
    assert got == g and got.cached is False and got.timings.e2e_s == 1.5
    store.close()


def test_persists_across_instances(tmp_path):
    path = tmp_path / "gen.sqlite"
    first = GenerationCache(path)
    first.put_many(ENGINE, [req()], [gen("kept")])
    first.close()
    second = GenerationCache(path)
    assert second.get_many(ENGINE, [req()])[0].text == "kept"
    second.close()


def test_later_write_replaces(cache):
    cache.put_many(ENGINE, [req()], [gen("old")])
    cache.put_many(ENGINE, [req()], [gen("new")])
    assert cache.get_many(ENGINE, [req()])[0].text == "new"
    assert rows(cache.path) == 1


# --------------------------------------------------------------------------- what is stored

def test_errors_are_not_cached(cache):
    bad = Generation(text="", finish_reason="error", error="server said no")
    cache.put_many(ENGINE, [req("a"), req("b")], [bad, gen("ok")])
    got = cache.get_many(ENGINE, [req("a"), req("b")])
    assert got[0] is None and got[1].text == "ok"
    assert rows(cache.path) == 1


def test_cached_generations_are_not_written_back(cache):
    cache.put_many(ENGINE, [req()], [gen("orig")])
    cache.put_many(ENGINE, [req()], [gen("replayed", cached=True)])
    assert cache.get_many(ENGINE, [req()])[0].text == "orig"


def test_only_errors_creates_no_rows(tmp_path):
    c = GenerationCache(tmp_path / "g.sqlite")
    c.put_many(ENGINE, [req()], [Generation(text="", error="x", finish_reason="error")])
    assert not c.path.exists() or rows(c.path) == 0
    c.close()


# --------------------------------------------------------------------------- keys

BASE = req("hi")


@pytest.mark.parametrize("changed", [
    req("hi", sampling=Sampling(temperature=0.7)),
    req("hi", sampling=Sampling(top_p=0.9)),
    req("hi", sampling=Sampling(max_tokens=65)),
    req("hi", sampling=Sampling(stop=("\n",))),
    req("hi", sampling=Sampling(seed=1)),
    req("hi", sampling=Sampling(seed=None)),
    req("hi", sampling=Sampling(logprobs=True)),
    req("hi", adapter="lora-a"),
    req("hi", output_schema={"type": "object"}),
    req("hi", stream=True),
    req("Hi"),
    Request(messages=({"role": "system", "content": "s"}, {"role": "user", "content": "hi"})),
    Request(messages=({"role": "assistant", "content": "hi"},)),
    Request(prompt="hi"),
], ids=lambda r: repr(r)[:60])
def test_key_changes_with_any_request_field(cache, changed):
    assert GenerationCache.key(ENGINE, changed) != GenerationCache.key(ENGINE, BASE)
    cache.put_many(ENGINE, [BASE], [gen("base")])
    assert cache.get_many(ENGINE, [changed]) == [None]


def test_key_is_stable_for_equal_requests():
    a = Request(messages=[{"role": "user", "content": "x"}], sampling=Sampling(stop=["a", "b"]))
    b = Request(messages=({"content": "x", "role": "user"},), sampling=Sampling(stop=("a", "b")))
    assert GenerationCache.key(ENGINE, a) == GenerationCache.key(ENGINE, b)
    assert GenerationCache.key(ENGINE, a) == GenerationCache.key(ENGINE, Request.from_dict(a.to_dict()))


@pytest.mark.parametrize("field, value", [("engine", "hf"), ("model", "other"),
                                          ("revision", "def"), ("device", "cpu")])
def test_engine_identity_is_part_of_the_key(cache, field, value):
    identity = {"engine": "scripted", "model": "m", "revision": "abc"}
    other = engine_key({**identity, field: value})
    assert other != ENGINE
    cache.put_many(ENGINE, [BASE], [gen()])
    assert cache.get_many(other, [BASE]) == [None]
    assert cache.get_many(ENGINE, [BASE])[0] is not None


def test_engine_key_ignores_dict_order():
    assert engine_key({"a": 1, "b": 2}) == engine_key({"b": 2, "a": 1})
    assert engine_key({"p": Path("/x")}) == engine_key({"p": "/x"})


# --------------------------------------------------------------------------- modes

def test_unknown_mode_names_the_modes(tmp_path):
    with pytest.raises(UsageError) as info:
        GenerationCache(tmp_path / "g.sqlite", "sometimes")
    for mode in CACHE_MODES:
        assert mode in str(info.value)


def test_mode_off_neither_reads_nor_writes(tmp_path):
    path = tmp_path / "g.sqlite"
    on = GenerationCache(path)
    on.put_many(ENGINE, [req("a")], [gen("A")])
    off = GenerationCache(path, "off")
    assert off.get_many(ENGINE, [req("a")]) == [None]
    off.put_many(ENGINE, [req("b")], [gen("B")])
    assert rows(path) == 1
    assert (off.reads, off.writes) == (False, False)
    assert off.hits == 0


def test_mode_off_creates_no_file(tmp_path):
    off = GenerationCache(tmp_path / "g.sqlite", "off")
    off.get_many(ENGINE, [req()])
    off.put_many(ENGINE, [req()], [gen()])
    assert not (tmp_path / "g.sqlite").exists()


def test_mode_refresh_writes_but_does_not_read(tmp_path):
    path = tmp_path / "g.sqlite"
    GenerationCache(path).put_many(ENGINE, [req()], [gen("stale")])
    refresh = GenerationCache(path, "refresh")
    assert (refresh.reads, refresh.writes) == (False, True)
    assert refresh.get_many(ENGINE, [req()]) == [None]
    refresh.put_many(ENGINE, [req()], [gen("fresh")])
    assert GenerationCache(path).get_many(ENGINE, [req()])[0].text == "fresh"


# --------------------------------------------------------------------------- concurrency

def _writer(path: str, worker: int, n: int, start: multiprocessing.synchronize.Barrier,
            errors: multiprocessing.Queue) -> None:
    try:
        c = GenerationCache(path)
        start.wait(timeout=30)
        for i in range(n):
            r = req(f"w{worker}-{i}")
            c.put_many(ENGINE, [r], [gen(f"{worker}:{i}")])
            if i % 10 == 0:  # interleave reads with the other writer's writes
                c.get_many(ENGINE, [req(f"w{1 - worker}-{i}"), r])
        c.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")
        raise


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_write_the_same_file(tmp_path, attempt):
    """Fresh file each time: both processes also race to create the table and switch to WAL."""
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "shared.sqlite")
    n = 150
    start = ctx.Barrier(2)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, n, start, errors)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert [p.exitcode for p in procs] == [0, 0]
    reader = GenerationCache(path)
    got = reader.get_many(ENGINE, [req(f"w{w}-{i}") for w in (0, 1) for i in range(n)])
    assert [g.text for g in got] == [f"{w}:{i}" for w in (0, 1) for i in range(n)]
    assert rows(Path(path)) == 2 * n
    reader.close()


def test_threads_get_their_own_connections(tmp_path):
    c = GenerationCache(tmp_path / "g.sqlite")
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(30):
                c.put_many(ENGINE, [req(f"t{t}-{i}")], [gen(f"{t}.{i}")])
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert rows(c.path) == 90


def test_opening_waits_for_another_writer(tmp_path):
    """A connection writing in rollback mode (as while another worker is still creating the
    file) makes SQLite refuse the switch to WAL at once, busy timeout or not: the cache must
    wait for it rather than fail with "database is locked"."""
    path = tmp_path / "g.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE generations (key TEXT PRIMARY KEY, engine TEXT, request TEXT,"
                  " generation TEXT, schema INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO generations VALUES ('k', 'e', '{}', '{}', 1)")
    releaser = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    releaser.start()
    try:
        c = GenerationCache(path)
        c.put_many(ENGINE, [req()], [gen("mine")])
        assert c.get_many(ENGINE, [req()])[0].text == "mine"
        c.close()
    finally:
        releaser.join()
        other.close()
    assert rows(path) == 2
