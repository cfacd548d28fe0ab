"""The aios shell language: words, quoting, `;` `&&` `||` `&` `|` `>` `>>` and `#` comments.

A line parses into a list of `AndOr` items, each a chain of commands joined by
`&&`/`||`, run in the background when it ends with `&`. `$?` and `$!` expand at
run time, except inside single quotes, as in sh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPERATORS = ("&&", "||", ">>", ";", "&", "|", ">", "\n")


class ParseError(ValueError):
    """A syntax error; the shell reports it with exit status 2."""


@dataclass(frozen=True)
class Word:
    # (text, expandable) segments: single-quoted text is never expanded
    parts: tuple[tuple[str, bool], ...]

    def expand(self, variables: dict[str, str]) -> str:
        out = []
        for text, expandable in self.parts:
            if expandable:
                for name, value in variables.items():
                    text = text.replace("$" + name, value)
            out.append(text)
        return "".join(out)

    @property
    def raw(self) -> str:
        return "".join(text for text, _ in self.parts)


@dataclass(frozen=True)
class Op:
    text: str


@dataclass
class Command:
    words: list[Word]
    redirect: Word | None = None
    append: bool = False  # `>>` rather than `>`


@dataclass
class AndOr:
    # first command, then (operator, command) pairs with operator in {"&&", "||"}
    first: list[Command]
    rest: list[tuple[str, list[Command]]] = field(default_factory=list)
    background: bool = False


def tokenize(line: str) -> list[Word | Op]:
    tokens: list[Word | Op] = []
    parts: list[tuple[str, bool]] = []
    buf: list[str] = []
    in_word = False
    i, n = 0, len(line)

    def flush_buf(expandable: bool = True) -> None:
        if buf:
            parts.append(("".join(buf), expandable))
            buf.clear()

    def end_word() -> None:
        nonlocal in_word
        flush_buf()
        if in_word:
            tokens.append(Word(tuple(parts)))
        parts.clear()
        in_word = False

    while i < n:
        c = line[i]
        if c == "'":
            flush_buf()
            j = line.find("'", i + 1)
            if j < 0:
                raise ParseError("unexpected end of line while looking for matching '")
            parts.append((line[i + 1 : j], False))
            in_word, i = True, j + 1
            continue
        if c == '"':
            flush_buf()
            i += 1
            chunk: list[str] = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\$`\n':
                    chunk.append(line[i + 1])
                    i += 2
                    continue
                chunk.append(line[i])
                i += 1
            if i >= n:
                raise ParseError('unexpected end of line while looking for matching "')
            parts.append(("".join(chunk), True))
            in_word, i = True, i + 1
            continue
        if c == "\\":
            if i + 1 < n:
                flush_buf()
                parts.append((line[i + 1], False))
                in_word, i = True, i + 2
            else:
                i += 1
            continue
        if c == "#" and not in_word:
            end_word()
            while i < n and line[i] != "\n":
                i += 1
            continue
        if c in " \t\r":
            end_word()
            i += 1
            continue
        op = next((o for o in OPERATORS if line.startswith(o, i)), None)
        if op is not None:
            end_word()
            tokens.append(Op(op))
            i += len(op)
            continue
        buf.append(c)
        in_word = True
        i += 1
    end_word()
    return tokens


def parse(line: str) -> list[AndOr]:
    """Parse one or more lines of shell text; raises ParseError on a syntax error."""
    tokens = tokenize(line)
    items: list[AndOr] = []
    pipeline: list[Command] = []
    command: Command | None = None
    current: AndOr | None = None
    pending: str | None = None  # "&&" / "||" awaiting its right-hand side
    expect_redirect = False

    def unexpected(tok: str) -> ParseError:
        shown = "newline" if tok == "\n" else tok
        return ParseError(f"syntax error near unexpected token `{shown}'")

    def close_pipeline(tok: str) -> list[Command] | None:
        nonlocal pipeline, command
        if command is not None:
            pipeline.append(command)
            command = None
        if not pipeline:
            return None
        done, pipeline = pipeline, []
        return done

    def close_andor(tok: str, background: bool) -> None:
        nonlocal current, pending
        done = close_pipeline(tok)
        if pending is not None:
            if done is None:
                raise unexpected(tok)
            assert current is not None
            current.rest.append((pending, done))
            pending = None
        elif done is not None:
            current = AndOr(first=done)
        if current is not None:
            current.background = background
            items.append(current)
        elif background:
            raise unexpected(tok)
        current = None

    for tok in tokens:
        if expect_redirect:
            if not isinstance(tok, Word):
                raise unexpected(tok.text)
            assert command is not None
            command.redirect = tok
            expect_redirect = False
            continue
        if isinstance(tok, Word):
            if command is None:
                command = Command(words=[])
            if command.redirect is not None:
                raise ParseError("arguments after a redirection are not supported")
            command.words.append(tok)
            continue
        op = tok.text
        if op in (">", ">>"):
            if command is None or command.redirect is not None:
                raise unexpected(op)
            command.append = op == ">>"
            expect_redirect = True
        elif op == "|":
            if command is None:
                raise unexpected(op)
            pipeline.append(command)
            command = None
        elif op in ("&&", "||"):
            done = close_pipeline(op)
            if done is None:
                raise unexpected(op)
            if pending is not None:
                assert current is not None
                current.rest.append((pending, done))
            else:
                current = AndOr(first=done)
            pending = op
        elif op in (";", "\n", "&"):
            if pipeline and command is None:
                raise unexpected(op)
            close_andor(op, background=op == "&")
    if expect_redirect:
        raise unexpected("\n")
    if pipeline and command is None:
        raise unexpected("\n")
    if pending is not None and command is None and not pipeline:
        raise ParseError("syntax error: unexpected end of line after " + pending)
    close_andor("\n", background=False)
    return items
