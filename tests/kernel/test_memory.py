"""Long-term memory: FTS5 precision on a seeded corpus, stemming, per-user isolation, hostile queries,
secrets masked, restart; and the memory.search / memory.add tools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.memory import MAX_TEXT, Memory, fts_query
from kernel.storage import Storage
from kernel.tools.builtin.memory import memory_add, memory_search
from kernel.tools.registry import ToolContext, ToolRegistry

CORPUS = {
    "packaging1": ("Python packaging: declare the build backend in pyproject.toml", "python packaging"),
    "packaging2": ("Build a wheel for packaging the python project with uv build", "packaging"),
    "asyncio": ("Python asyncio runs coroutines on one event loop", "python"),
    "typing": ("Python type hints are checked by mypy, not at runtime", "python"),
    "cat": ("The cat sleeps on the warm laptop every afternoon", "pets"),
    "dog": ("Walk the dog at seven before breakfast", "pets"),
    "sqlite": ("SQLite WAL mode lets readers work while one writer commits", "database"),
    "postgres": ("Postgres vacuum reclaims space from dead tuples", "database"),
    "git": ("Git rebase rewrites history; never rebase a shared branch", "git"),
    "docker": ("Docker images are built in layers; order the Dockerfile for caching", "containers"),
    "kubernetes": ("Kubernetes restarts a pod when its liveness probe fails", "containers"),
    "coffee": ("Coffee beans keep best in an airtight jar away from light", "kitchen"),
    "bread": ("Sourdough bread needs a starter fed the night before", "kitchen"),
    "garden": ("Tomatoes in the garden want water every morning in summer", "garden"),
    "bike": ("The bike chain squeaks; oil it after rainy rides", "bike"),
    "tax": ("File the tax return before the end of April", "admin"),
    "dentist": ("Dentist appointment on Tuesday at three", "admin"),
    "flight": ("The flight to Lisbon leaves from terminal two", "travel"),
    "passport": ("The passport expires next year; renew it in spring", "travel"),
    "rust": ("Rust borrow checker rejects two mutable references", "rust"),
    "regex": ("Regular expressions: anchor patterns with caret and dollar", "text"),
    "vim": ("In vim, ci( changes the text inside parentheses", "editor"),
    "ssh": ("Use ssh-agent so the key passphrase is typed once", "shell"),
    "backup": ("Nightly backup of the photos goes to the external disk", "backup"),
    "piano": ("Practise piano scales slowly with a metronome", "music"),
    "running": ("Running intervals on Thursday: six times four hundred metres", "sport"),
    "birthday": ("Mum's birthday is on the twelfth of March", "family"),
    "wifi": ("The wifi router reboots itself when it overheats", "home"),
    "cache": ("Cache invalidation bugs appear when keys ignore the locale", "programming"),
    "ollama": ("Ollama serves several requests at once with OLLAMA_NUM_PARALLEL", "llm"),
}



@pytest.fixture
def memory(storage: Storage) -> Iterator[Memory]:
    m = Memory(storage)
    yield m
    m.close()


@pytest.fixture
def seeded(memory: Memory) -> dict[int, str]:
    """The corpus for alice: note id → topic."""
    return {memory.add("alice", text, tags=tags): topic for topic, (text, tags) in CORPUS.items()}


def topics(hits: list[dict], ids: dict[int, str]) -> list[str]:
    return [ids[h["id"]] for h in hits]


@pytest.mark.parametrize(("query", "first"), [
    ("python packaging", {"packaging1", "packaging2"}),
    ("sqlite writer", {"sqlite"}),
    ("pod liveness", {"kubernetes"}),
    ("when does my flight leave", {"flight"}),
    ("rebase shared branch", {"git"}),
    ("sourdough starter", {"bread"}),
])
def test_the_right_notes_come_first(memory: Memory, seeded: dict[int, str], query: str, first: set[str]) -> None:
    hits = memory.search("alice", query, limit=5)
    assert set(topics(hits, seeded)[: len(first)]) == first
    scores = [h["score"] for h in hits]
    assert scores[: len(first)] == sorted(scores[: len(first)], reverse=True)


def test_notes_with_every_word_rank_before_notes_with_some(memory: Memory, seeded: dict[int, str]) -> None:
    found = topics(memory.search("alice", "python packaging", limit=10), seeded)
    assert set(found[:2]) == {"packaging1", "packaging2"}
    assert set(found[2:]) == {"asyncio", "typing"}  # python only


def test_stemming_finds_other_forms_of_a_word(memory: Memory, seeded: dict[int, str]) -> None:
    assert topics(memory.search("alice", "cats"), seeded) == ["cat"]
    assert topics(memory.search("alice", "rebased"), seeded) == ["git"]
    assert topics(memory.search("alice", "SLEEPING"), seeded) == ["cat"]


def test_tags_are_searched_too(memory: Memory, seeded: dict[int, str]) -> None:
    assert set(topics(memory.search("alice", "kitchen"), seeded)) == {"coffee", "bread"}


def test_rows_have_the_documented_keys(memory: Memory) -> None:
    note = memory.add("alice", "  remember the milk  ", tags="shopping", pid=7)
    [hit] = memory.search("alice", "milk")
    assert set(hit) == {"id", "user", "pid", "text", "tags", "ts", "score"}
    assert (hit["id"], hit["user"], hit["pid"], hit["text"], hit["tags"]) == (
        note, "alice", 7, "remember the milk", "shopping")
    assert memory.list("alice") == [{k: v for k, v in hit.items() if k != "score"}]


def test_search_can_be_limited_to_a_process(memory: Memory) -> None:
    a = memory.add("alice", "deploy on friday", pid=1)
    b = memory.add("alice", "deploy on monday", pid=2)
    assert [h["id"] for h in memory.search("alice", "deploy", limit=5)] == [b, a]
    assert [h["id"] for h in memory.search("alice", "deploy", pid=1)] == [a]


def test_limit_is_respected(memory: Memory, seeded: dict[int, str]) -> None:
    assert len(memory.search("alice", "python", limit=2)) == 2
    assert memory.search("alice", "python", limit=0) == []
    assert len(memory.list("alice", limit=3)) == 3


def test_each_user_sees_only_their_own_notes(memory: Memory, seeded: dict[int, str]) -> None:
    bob = memory.add("bob", "bob's cat is called Felix", tags="pets")
    assert bob not in [h["id"] for h in memory.search("alice", "cat felix", limit=50)]
    assert [h["id"] for h in memory.search("bob", "cat")] == [bob]
    assert [r["id"] for r in memory.list("bob")] == [bob]
    assert memory.search("carol", "cat") == []
    cat = next(i for i, t in seeded.items() if t == "cat")
    assert memory.remove("bob", cat) is False  # not his
    assert topics(memory.search("alice", "cat"), seeded) == ["cat"]
    assert memory.remove("alice", cat) is True
    assert memory.search("alice", "cat") == []
    assert memory.remove("alice", cat) is False


def test_secrets_are_masked_before_they_are_stored(memory: Memory, storage: Storage) -> None:
    key = "sk-" + "a1B2c3D4e5F6g7H8i9J0k"
    memory.add("alice", f"the deploy key is {key}", tags=f"PASSWORD={key}")
    stored = storage.db.execute("SELECT text, tags FROM memory").fetchall()
    assert stored == [("the deploy key is [REDACTED]", "PASSWORD=[REDACTED]")]
    assert memory.search("alice", key[3:]) == []


def test_empty_and_huge_notes_are_refused(memory: Memory) -> None:
    with pytest.raises(ValueError, match="empty"):
        memory.add("alice", "   ")
    with pytest.raises(ValueError, match="too long"):
        memory.add("alice", "x" * (MAX_TEXT + 1))
    assert memory.list("alice") == []


def test_notes_survive_a_restart(home: Path) -> None:
    first, mem = Storage(home), None
    try:
        mem = Memory(first)
        note = mem.add("alice", "the staging database lives on port 5433")
    finally:
        if mem:
            mem.close()
        first.close()
    again = Storage(home)
    reopened = Memory(again)
    try:
        assert [h["id"] for h in reopened.search("alice", "staging port")] == [note]
    finally:
        reopened.close()
        again.close()


def test_writes_are_committed_at_once(memory: Memory, home: Path) -> None:
    note = memory.add("alice", "visible to another connection")
    other = Storage(home)  # another kernel on the same AIOS_HOME
    try:
        assert other.db.execute("SELECT id FROM memory").fetchall() == [(note,)]
    finally:
        other.close()


HOSTILE = ['"', '"unterminated', "*", "py*", "text:cat", "-cat", "NOT cat", "cat NEAR dog", "NEAR(cat dog, 2)",
           "(cat", "cat)", "AND", "OR OR", "^cat", "{text}: cat", "cat + dog", "'; DROP TABLE memory; --",
           "\x00", "\u202e", "c\u0301at", "🐈 cat", "_"]


@pytest.mark.hostile
@pytest.mark.parametrize("query", HOSTILE)
def test_fts_syntax_in_a_query_is_plain_text(memory: Memory, seeded: dict[int, str], query: str) -> None:
    hits = memory.search("alice", query)
    assert all(h["user"] == "alice" for h in hits)
    if "cat" in query.lower() and "\u0301" not in query:
        assert "cat" in topics(hits, seeded)
    assert len(memory.list("alice", limit=100)) == len(CORPUS)  # nothing dropped


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memory]:
    """One seeded memory for the property test (hypothesis reruns a test, not its function fixtures)."""
    storage = Storage(tmp_path_factory.mktemp("memory-shared"))
    memory = Memory(storage)
    for text, tags in CORPUS.values():
        memory.add("alice", text, tags=tags)
    memory.add("bob", "bob's python cat notes", tags="python")
    yield memory
    memory.close()
    storage.close()


@pytest.mark.hostile
@given(query=st.text(max_size=60))
def test_no_query_raises_or_leaks(shared: Memory, query: str) -> None:
    hits = shared.search("alice", query, limit=5)
    assert len(hits) <= 5 and all(h["user"] == "alice" for h in hits)


def test_a_query_becomes_quoted_words() -> None:
    assert fts_query('NEAR("a*" b:c) -d') == '"near" AND "a" AND "b" AND "c" AND "d"'
    assert fts_query("x Y x y", "OR") == '"x" OR "y"'
    assert fts_query("?! _ *") == ""


def test_an_empty_query_finds_nothing(memory: Memory, seeded: dict[int, str]) -> None:
    assert memory.search("alice", "") == []
    assert memory.search("alice", "  ?! ") == []


# -- the tools ---------------------------------------------------------------------------------------


def ctx(home: Path, memory: Memory | None, user: str = "alice", pid: int = 3) -> ToolContext:
    return ToolContext(pid=pid, user=user, workspace=home, services={"memory": memory} if memory else {})


async def test_memory_tools_add_and_search_as_the_caller(home: Path, memory: Memory) -> None:
    tools = ToolRegistry([memory_search, memory_add])
    added = await tools.call("memory.add", ctx(home, memory), {"text": "the answer is\n42", "tags": "facts"})
    assert added.ok and added.output.startswith("remembered #")
    note = int(added.output.removeprefix("remembered #"))
    assert memory.list("alice")[0]["pid"] == 3
    found = await tools.call("memory.search", ctx(home, memory), {"query": "answer"})
    assert found.output == f"#{note}  the answer is 42"
    other = await tools.call("memory.search", ctx(home, memory, user="bob"), {"query": "answer"})
    assert other.ok and other.output == "(no memories match)"
    assert memory_search.target_of({"query": "q"}) == "q" and memory_add.target_of({"text": "t"}) == "t"


async def test_memory_tools_report_errors(home: Path, memory: Memory) -> None:
    tools = ToolRegistry([memory_search, memory_add])
    missing = await tools.call("memory.search", ctx(home, None), {"query": "x"})
    assert not missing.ok and missing.error == "memory is not available"
    empty = await tools.call("memory.add", ctx(home, memory), {"text": " "})
    assert not empty.ok and "empty" in (empty.error or "")
    hostile = await tools.call("memory.search", ctx(home, memory), {"query": 'NEAR("x*', "limit": 3})
    assert hostile.ok

