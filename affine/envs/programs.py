"""The offline ABD/DED corpus: small stdin/stdout programs generated here, each checked by running it in the sandbox.

Rows follow the schema of the real dataset ``satpalsr/rl-python`` (``program``, ``inputs``, ``output``, ``prompt``,
``test_cases`` as a JSON string ``{"test_cases": [{"type": "stdin_stdout", "input", "output", "fn_name": null}]}``)
plus ``row_id``, ``family``, ``difficulty`` (1..3, the curriculum knob), ``split`` and ``template``.

A template is a stdin *reader* (code, description, input generator, parser) plus a *body* with parameters (constants,
operators, output words) drawn from a seeded RNG, so one template yields many distinct programs; a program is kept
once (by its text).  Expected outputs come from each template's own Python reference, written apart from the program
text, and :func:`generate_corpus` keeps a row only when the sandbox run of its program prints exactly those outputs for
every test case: a template whose program, statement and reference disagree never reaches a training set.

Splits are disjoint by construction: a program belongs to ``eval`` iff the SHA-256 of its text falls in a fixed fifth
of the hash space, whatever seed or template produced it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import operator
import random
from collections.abc import Callable
from typing import Any, NamedTuple

from affine.sandbox import Limits, run_many

log = logging.getLogger(__name__)

FAMILIES = ("arithmetic", "strings", "lists", "loops", "conditionals", "algorithms")
SPLITS = ("train", "eval")
N_CASES = 4


def _word(r: random.Random, lo: int = 3, hi: int = 9) -> str:
    return "".join(r.choice("abcdefgh") for _ in range(r.randint(lo, hi)))


def _palindrome_or_not(r: random.Random) -> str:
    w = _word(r, 2, 4)
    return w + w[::-1][r.randint(0, 1) :] if r.random() < 0.5 else w


def _nums(r: random.Random, lo: int = -20, hi: int = 40, k: tuple[int, int] = (3, 7)) -> list[int]:
    return [r.randint(lo, hi) for _ in range(r.randint(*k))]


def _pairs(r: random.Random) -> str:
    return _lines(t := r.randint(1, 4), *(f"{r.randint(-9, 20)} {r.randint(0, 9)}" for _ in range(t)))


def _lines(*parts) -> str:
    return "".join(f"{p}\n" for p in parts)


def _ints(s: str) -> list[int]:
    return [int(t) for t in s.split()]


class Reader(NamedTuple):
    code: str
    text: str
    gen: Callable[[random.Random], str]
    parse: Callable[[str], Any]


READERS = {
    "int": Reader("x = int(input())", "one integer x", lambda r: _lines(r.randint(-50, 50)), int),
    "nat": Reader("n = int(input())", "one non-negative integer n", lambda r: _lines(r.randint(0, 3000)), int),
    "pos": Reader("n = int(input())", "one integer n from 1 to 300", lambda r: _lines(r.randint(1, 300)), int),
    "small": Reader("n = int(input())", "one integer n from 1 to 9", lambda r: _lines(r.randint(1, 9)), int),
    "score": Reader("x = int(input())", "a score x from 0 to 100", lambda r: _lines(r.randint(0, 100)), int),
    "year": Reader("y = int(input())", "a year y", lambda r: _lines(r.choice([r.randint(1800, 2400), 2000])), int),
    "two": Reader("a, b = map(int, input().split())", "two integers a and b on one line",
                  lambda r: _lines(f"{r.randint(-20, 30)} {r.randint(-20, 30)}"), _ints),
    "twopos": Reader("a, b = map(int, input().split())", "two positive integers a and b on one line",
                     lambda r: _lines(f"{r.randint(1, 120)} {r.randint(1, 120)}"), _ints),
    "lines2": Reader("a = int(input())\nb = int(input())", "two integers a and b, one per line",
                     lambda r: _lines(r.randint(-30, 30), r.randint(-30, 30)), _ints),
    "word": Reader("s = input()", "one lowercase word s", lambda r: _lines(_word(r)), str.strip),
    "pal": Reader("s = input()", "one lowercase word s", lambda r: _lines(_palindrome_or_not(r)), str.strip),
    "digits": Reader("s = input()", "a positive integer s", lambda r: _lines(r.randint(1, 10**7)), str.strip),
    "words": Reader("w = input().split()", "one line of lowercase words w, separated by spaces",
                    lambda r: _lines(" ".join(_word(r, 2, 6) for _ in range(r.randint(2, 5)))), str.split),
    "nums": Reader("nums = list(map(int, input().split()))", "a line of integers nums",
                   lambda r: _lines(" ".join(map(str, _nums(r)))), _ints),
    "col": Reader("n = int(input())\nnums = [int(input()) for _ in range(n)]", "n, then n integers nums, one per line",
                  lambda r: (lambda v: _lines(len(v), *v))(_nums(r, k=(1, 6))), lambda s: _ints(s)[1:]),
    "wordn": Reader("w = input()\nn = int(input())", "a word w, then an integer n from 1 to 5 on the next line",
                    lambda r: _lines(_word(r), r.randint(1, 5)), lambda s: (s.split()[0], int(s.split()[1]))),
    "cases": Reader("", "t, then t lines with two integers a and b each",
                    _pairs,
                    lambda s: [tuple(_ints(line)) for line in s.splitlines()[1:]]),
}  # fmt: skip


class Template(NamedTuple):
    family: str
    difficulty: int
    reader: str
    body: str  # str.format-ed with the drawn params ({{ }} for literal braces)
    task: str
    ref: Callable[[Any, dict], Any]  # (parsed stdin, params) -> the output (lists print one item per line)
    params: dict[str, list]


TEMPLATES: list[Template] = []


def _t(family: str, difficulty: int, reader: str, body: str, task: str, ref: Callable, **params) -> None:
    TEMPLATES.append(Template(family, difficulty, reader, body, task, ref, {k: list(v) for k, v in params.items()}))


def _if(cond: str, yes: str = "{yn[0]}", no: str = "{yn[1]}") -> str:
    return f"if {cond}:\n    print('{yes}')\nelse:\n    print('{no}')"


def _yn(flag: bool, p: dict) -> str:
    return p["yn"][0] if flag else p["yn"][1]


YN = [("YES", "NO"), ("yes", "no"), ("True", "False"), ("ok", "fail"), ("A", "B"), ("on", "off")]
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
ABC, SEPS = "abcdefgh", ["-", "+", ", ", "_", " | ", "/", ""]
PAIRS = [(a, b) for a in range(20, 90, 5) for b in range(a + 5, 100, 5)]

# fmt: off
# ---- arithmetic
_t("arithmetic", 1, "int", "print(x * {a} + {b})", "Print x * {a} + {b}.", lambda x, p: x * p["a"] + p["b"],
   a=range(2, 10), b=range(0, 10))
_t("arithmetic", 1, "int", "print(x * {a} - {b})", "Print x times {a}, minus {b}.", lambda x, p: x * p["a"] - p["b"],
   a=range(2, 10), b=range(1, 10))
_t("arithmetic", 1, "lines2", "print(a {op} b + {c})", "Print a {op} b + {c}.",
   lambda v, p: OPS[p["op"]](*v) + p["c"], op="+-*", c=range(10))
_t("arithmetic", 2, "nat", "print(n // {d}, n % {d})", "Print the quotient and the remainder of n divided by {d}.",
   lambda n, p: f"{n // p['d']} {n % p['d']}", d=range(2, 13))
_t("arithmetic", 2, "two", "print(a * {p} - b * {q})", "Print a * {p} - b * {q}.",
   lambda v, p: v[0] * p["p"] - v[1] * p["q"], p=range(1, 10), q=range(1, 10))
_t("arithmetic", 3, "two", "print(max(a, b) * {k} - min(a, b) % {m})",
   "Print the larger of a and b times {k}, minus the smaller one modulo {m}.",
   lambda v, p: max(v) * p["k"] - min(v) % p["m"], k=range(2, 6), m=range(2, 10))
_t("arithmetic", 3, "lines2", "print((a + {p}) * (b - {q}) % {m})", "Print (a + {p}) * (b - {q}) modulo {m}.",
   lambda v, p: (v[0] + p["p"]) * (v[1] - p["q"]) % p["m"], p=range(1, 10), q=range(1, 10), m=[7, 10, 11, 13, 100])
# ---- strings
_t("strings", 1, "word", "print(s.upper())", "Print s in upper case.", lambda s, p: s.upper())
_t("strings", 1, "word", "print(s[::-1])", "Print s reversed.", lambda s, p: s[::-1])
_t("strings", 1, "word", "print(s * {k})", "Print s repeated {k} times.", lambda s, p: s * p["k"], k=range(2, 5))
_t("strings", 1, "word", "print(s[:{k}])", "Print the first {k} letters of s.", lambda s, p: s[: p["k"]], k=range(1, 5))
_t("strings", 1, "word", "print(s[{k}:] + s[:{k}])", "Move the first {k} letters of s to its end and print it.",
   lambda s, p: s[p["k"] :] + s[: p["k"]], k=range(1, 4))
_t("strings", 1, "word", "print(s + '{x}' * {k})", "Print s followed by {k} copies of '{x}'.",
   lambda s, p: s + p["x"] * p["k"], x="!?#*.", k=range(1, 5))
_t("strings", 1, "word", "print(len(s) + {k})", "Print the length of s plus {k}.", lambda s, p: len(s) + p["k"],
   k=range(10))
_t("strings", 2, "word", "print(s.count('{c}'))", "Print how many times the letter {c} occurs in s.",
   lambda s, p: s.count(p["c"]), c=ABC)
_t("strings", 2, "word", "print(s.replace('{c}', '{d}'))", "Print s with every {c} replaced by {d}.",
   lambda s, p: s.replace(p["c"], p["d"]), c=ABC, d=ABC)
_t("strings", 2, "word", "print(s.find('{c}'))", "Print the position (from 0) of the first {c} in s, or -1.",
   lambda s, p: s.find(p["c"]), c=ABC)
_t("strings", 2, "pal", _if("s == s[::-1]"), "Print {yn[0]} if s reads the same backwards, otherwise {yn[1]}.",
   lambda s, p: _yn(s == s[::-1], p), yn=YN)
_t("strings", 3, "words", "print('{sep}'.join(reversed(w)))", "Print the words in reverse order, joined by '{sep}'.",
   lambda w, p: p["sep"].join(reversed(w)), sep=SEPS)
_t("strings", 3, "words", "print('{sep}'.join(sorted(w)))", "Print the words sorted alphabetically, joined by '{sep}'.",
   lambda w, p: p["sep"].join(sorted(w)), sep=SEPS)
_t("strings", 3, "words", "print('{sep}'.join(x[::-1] for x in w))", "Print each word reversed, joined by '{sep}'.",
   lambda w, p: p["sep"].join(x[::-1] for x in w), sep=SEPS)
_t("strings", 3, "word", "print(''.join(chr((ord(c) - 97 + {k}) % 26 + 97) for c in s))",
   "Shift every letter of s {k} places forward in the alphabet (z wraps to a) and print the result.",
   lambda s, p: "".join(chr((ord(c) - 97 + p["k"]) % 26 + 97) for c in s), k=range(1, 26))
# ---- lists
_t("lists", 1, "nums", "print(sum(nums) + {k})", "Print the sum of the numbers plus {k}.",
   lambda v, p: sum(v) + p["k"], k=range(10))
_t("lists", 1, "nums", "print(max(nums) - {k})", "Print the largest number minus {k}.",
   lambda v, p: max(v) - p["k"], k=range(10))
_t("lists", 1, "nums", "print(min(nums) * {k})", "Print the smallest number times {k}.",
   lambda v, p: min(v) * p["k"], k=range(1, 10))
_t("lists", 1, "nums", "print(nums[{i}] * {k})", "Print the number at position {i} (Python indexing) times {k}.",
   lambda v, p: v[p["i"]] * p["k"], i=[0, 1, 2, -1, -2], k=range(1, 10))
_t("lists", 2, "nums", "print(sum(1 for x in nums if x > {t}))", "Print how many numbers are greater than {t}.",
   lambda v, p: sum(x > p["t"] for x in v), t=range(-5, 25))
_t("lists", 2, "nums", "print(sum(x for x in nums if x % 2 == 0) + {t})", "Print the sum of the even numbers plus {t}.",
   lambda v, p: sum(x for x in v if x % 2 == 0) + p["t"], t=range(10))
_t("lists", 2, "nums", "print(*sorted(nums, reverse={rev})[::{step}])",
   "Sort the numbers (descending: {rev}) and print every {step}-th one from the first, space-separated.",
   lambda v, p: " ".join(map(str, sorted(v, reverse=p["rev"])[:: p["step"]])), rev=[True, False], step=range(1, 4))
_t("lists", 3, "col", "print(max(nums) - min(nums) + {k})", "Print the largest minus the smallest, plus {k}.",
   lambda v, p: max(v) - min(v) + p["k"], k=range(30))
_t("lists", 3, "col", "print(sum(nums) // len(nums) + {k})", "Print their average rounded down, plus {k}.",
   lambda v, p: sum(v) // len(v) + p["k"], k=range(30))
_t("lists", 3, "col", "print(sorted(nums)[len(nums) // 2] * {k})",
   "Sort them and print the one at position n // 2 (counting from 0), times {k}.",
   lambda v, p: sorted(v)[len(v) // 2] * p["k"], k=range(1, 10))
# ---- loops
_t("loops", 1, "small", "for {i} in range(1, n + 1):\n    print({i} * {k})", "Print the first n multiples of {k}.",
   lambda n, p: [i * p["k"] for i in range(1, n + 1)], k=range(1, 10), i=["i", "j", "step"])
_t("loops", 1, "wordn", "for i in range({s}, {s} + n):\n    print(f'{{w}}{sep}{{i}}')",
   "Print n lines: the word, then '{sep}', then a counter that starts at {s}.",
   lambda v, p: [f"{v[0]}{p['sep']}{i}" for i in range(p["s"], p["s"] + v[1])], s=range(4), sep=SEPS)
_t("loops", 2, "small", "total = {c}\nfor i in range(1, n + 1):\n    total += i ** {e}\nprint(total)",
   "Print {c} plus the sum of i ** {e} for i from 1 to n.", lambda n, p: p["c"] + sum(i ** p["e"] for i in range(n+1)),
   c=range(10), e=range(1, 4))
_t("loops", 2, "nat", "count = 0\nwhile n > 0:\n    n //= {k}\n    count += 1\nprint(count)",
   "Print how many integer divisions by {k} it takes to bring n down to 0.",
   lambda n, p: _steps(n, p["k"]), k=range(2, 10))
_t("loops", 2, "small", "f = 1\nfor i in range(2, n + 1):\n    f *= i\nprint(f % {m})", "Print n! modulo {m}.",
   lambda n, p: math.factorial(n) % p["m"], m=range(7, 100))
_t("loops", 3, "cases", "for _ in range(int(input())):\n    a, b = map(int, input().split())\n    print(a {op} b+{c})",
   "For each of the t lines print a {op} b + {c}.", lambda v, p: [OPS[p["op"]](a, b) + p["c"] for a, b in v],
   op="+-*", c=range(30))
_t("loops", 3, "small", "for i in range(1, n + 1):\n    print('{ch}' * (i * {k}))",
   "Print n lines; line i (from 1) holds i * {k} copies of '{ch}'.",
   lambda n, p: [p["ch"] * (i * p["k"]) for i in range(1, n + 1)], ch="*#+@o=x", k=range(1, 5))
# ---- conditionals
_t("conditionals", 1, "int", _if("x % {m} == 0"), "Print {yn[0]} if x is divisible by {m}, otherwise {yn[1]}.",
   lambda x, p: _yn(x % p["m"] == 0, p), m=range(2, 8), yn=YN)
_t("conditionals", 1, "int", _if("x > {t}"), "Print {yn[0]} if x is greater than {t}, otherwise {yn[1]}.",
   lambda x, p: _yn(x > p["t"], p), t=range(-10, 30), yn=YN)
_t("conditionals", 2, "two", "if a > b:\n    print('{w[0]}')\nelif a == b:\n    print('{w[1]}')\n"
   "else:\n    print('{w[2]}')",
   "Print {w[0]} if a > b, {w[1]} if they are equal, otherwise {w[2]}.",
   lambda v, p: p["w"][0] if v[0] > v[1] else p["w"][1] if v[0] == v[1] else p["w"][2],
   w=[("first", "same", "second"), (">", "=", "<"), ("A", "tie", "B")])
_t("conditionals", 2, "score", "if x >= {ab[1]}:\n    print('{g[0]}')\nelif x >= {ab[0]}:\n    print('{g[1]}')\n"
   "else:\n    print('{g[2]}')",
   "Print {g[0]} if x is at least {ab[1]}, {g[1]} if it is at least {ab[0]}, otherwise {g[2]}.",
   lambda x, p: p["g"][0] if x >= p["ab"][1] else p["g"][1] if x >= p["ab"][0] else p["g"][2],
   ab=PAIRS, g=[("A", "B", "C"), ("gold", "silver", "bronze"), ("high", "mid", "low")])
_t("conditionals", 3, "pos", "if n % {pq[0]} == 0 and n % {pq[1]} == 0:\n    print('{w[0]}{w[1]}')\n"
   "elif n % {pq[0]} == 0:\n"
   "    print('{w[0]}')\nelif n % {pq[1]} == 0:\n    print('{w[1]}')\nelse:\n    print(n)",
   "Print {w[0]}{w[1]} if n is divisible by {pq[0]} and {pq[1]}, {w[0]} if only by {pq[0]}, {w[1]} if only by {pq[1]},"
   " otherwise n.", lambda n, p: (p["w"][0] * (n % p["pq"][0] == 0) + p["w"][1] * (n % p["pq"][1] == 0)) or n,
   pq=[(a, b) for a in range(2, 8) for b in range(2, 8) if a != b],
   w=[("Fizz", "Buzz"), ("Ping", "Pong"), ("Foo", "Bar")])
_t("conditionals", 3, "year", _if("y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)"),
   "Print {yn[0]} if y is a leap year in the Gregorian calendar, otherwise {yn[1]}.",
   lambda y, p: _yn(y % 4 == 0 and (y % 100 != 0 or y % 400 == 0), p), yn=YN)
# ---- algorithms
_t("algorithms", 2, "digits", "print(sum(int(c) for c in s) % {m})", "Print the sum of the digits of s modulo {m}.",
   lambda s, p: sum(map(int, s)) % p["m"], m=range(2, 20))
_t("algorithms", 2, "digits", "print(s.count('{d}') + {k})", "Print how many digits of s are {d}, plus {k}.",
   lambda s, p: s.count(str(p["d"])) + p["k"], d=range(10), k=range(5))
_t("algorithms", 2, "twopos", "while b:\n    a, b = b, a % b\nprint(a * {k})",
   "Print {k} times the greatest common divisor of a and b.", lambda v, p: math.gcd(*v) * p["k"], k=range(1, 10))
_t("algorithms", 2, "pos", "print(sum(1 for d in range(1, n + 1) if n % d == 0) + {k})",
   "Print the number of divisors of n, plus {k}.", lambda n, p: sum(n % d == 0 for d in range(1, n + 1)) + p["k"],
   k=range(10))
_t("algorithms", 3, "small", "a, b = {f[0]}, {f[1]}\nfor _ in range(n):\n    a, b = b, a + b\nprint(a + {k})",
   "A sequence starts {f[0]}, {f[1]}, and each next term is the sum of the two before it. Print the term at position n"
   " (counting from 0), plus {k}.", lambda n, p: _fib(n, *p["f"]) + p["k"],
   f=[(a, b) for a in range(4) for b in range(1, 5)], k=range(10))
_t("algorithms", 3, "nat", "d = ''\nwhile n > 0:\n    d = str(n % {k}) + d\n    n //= {k}\nprint(d or '0')",
   "Print n written in base {k}.", lambda n, p: _base(n, p["k"]), k=range(2, 10))
_t("algorithms", 3, "pos", "prime = n > 1\nfor d in range(2, int(n ** 0.5) + 1):\n"
   "    if n % d == 0:\n        prime = False\n"
   + _if("prime"), "Print {yn[0]} if n is prime, otherwise {yn[1]}.",
   lambda n, p: _yn(n > 1 and all(n % d for d in range(2, n)), p), yn=YN)
_t("algorithms", 3, "pos", "steps = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1\n"
   "print(steps + {k})", "Apply 'halve if even, else triple and add 1' until n is 1; print the step count plus {k}.",
   lambda n, p: _collatz(n) + p["k"], k=range(30))
# fmt: on


def _steps(n: int, k: int) -> int:
    return 0 if n == 0 else 1 + _steps(n // k, k)


def _fib(n: int, a: int, b: int) -> int:
    for _ in range(n):
        a, b = b, a + b
    return a


def _base(n: int, k: int) -> str:
    return _base(n // k, k).lstrip("0") + str(n % k) if n else "0"


def _collatz(n: int) -> int:
    return 0 if n == 1 else 1 + _collatz(n // 2 if n % 2 == 0 else 3 * n + 1)


# ------------------------------------------------------------------------------------------------------ corpus
def split_of(program: str) -> str:
    """``eval`` for a fixed fifth of all possible program texts, ``train`` for the rest."""
    return "eval" if int(hashlib.sha256(program.encode()).hexdigest()[:8], 16) % 5 == 0 else "train"


def _render(value: Any) -> str:
    return "".join(f"{v}\n" for v in value) if isinstance(value, list) else f"{value}\n"


def make_row(index: int, rng: random.Random) -> dict:
    """One row from template ``index`` with parameters and test inputs drawn from ``rng``."""
    t = TEMPLATES[index]
    reader = READERS[t.reader]
    params = {name: rng.choice(choices) for name, choices in t.params.items()}
    program = "\n".join(part for part in (reader.code, t.body.format(**params)) if part) + "\n"
    inputs: list[str] = []
    for _ in range(N_CASES * 5):
        if (stdin := reader.gen(rng)) not in inputs:
            inputs.append(stdin)
        if len(inputs) == N_CASES:
            break
    outputs = [_render(t.ref(reader.parse(stdin), params)) for stdin in inputs]
    cases = [
        {"type": "stdin_stdout", "input": i, "output": o, "fn_name": None} for i, o in zip(inputs, outputs, strict=True)
    ]
    task = f"Read {reader.text}. {t.task.format(**params)}"
    return {
        "row_id": f"{t.family}-{t.difficulty}-{hashlib.sha256(program.encode()).hexdigest()[:10]}",
        "program": program,
        "inputs": inputs[0],
        "output": outputs[0],
        "prompt": f"{task}\n\nExample input:\n{inputs[0]}\nExample output:\n{outputs[0]}",
        "test_cases": json.dumps({"test_cases": cases}),
        "family": t.family,
        "difficulty": t.difficulty,
        "split": split_of(program),
        "template": index,
    }


# Runs many rows' programs in one sandboxed process, stdin/stdout swapped per case: ~100x faster than one each.
_HARNESS = """import io, json, sys
results = []
for source, inputs in json.loads(sys.stdin.read()):
    outs = []
    for data in inputs:
        sys.stdin, sys.stdout = io.TextIOWrapper(io.BytesIO(data.encode())), io.StringIO()
        try:
            exec(compile(source, "main.py", "exec"), {"__name__": "__main__"})
            outs.append(sys.stdout.getvalue())
        except BaseException as exc:
            outs.append("error: %r" % exc)
        finally:
            sys.stdout = sys.__stdout__
    results.append(outs)
print(json.dumps(results))
"""


def verify_rows(rows: list[dict], chunk: int = 40) -> list[bool]:
    """Run each row's program on all its test inputs in the sandbox: True where it prints every expected output."""
    cases = [json.loads(r["test_cases"])["test_cases"] for r in rows]
    groups = [list(zip(rows[k : k + chunk], cases[k : k + chunk], strict=True)) for k in range(0, len(rows), chunk)]
    jobs = [(_HARNESS, json.dumps([(r["program"], [c["input"] for c in cs]) for r, cs in g])) for g in groups]
    ok: list[bool] = []
    for group, result in zip(groups, run_many(jobs, Limits(wall_s=60.0)), strict=True):
        try:
            outs = json.loads(result.stdout)
        except ValueError:
            outs = [None] * len(group)
        ok += [got == [c["output"] for c in cs] for got, (_, cs) in zip(outs, group, strict=False)]
    return ok


@functools.lru_cache(maxsize=16)
def _corpus(seed: int, n: int, difficulty: int | None, families: tuple[str, ...], split: str | None) -> tuple:
    by_family = {f: [i for i, t in enumerate(TEMPLATES) if t.family == f and difficulty in (None, t.difficulty)]
                 for f in families}  # fmt: skip
    turns = [ids for ids in by_family.values() if ids]  # families take turns, so each gets about n / len(turns)
    if not turns:
        raise ValueError(f"no program templates for difficulty={difficulty} families={list(families)}")
    rows: list[dict] = []
    seen: set[str] = set()
    attempt, budget = 0, 60 * n + 100
    while len(rows) < n and attempt < budget:
        batch = []
        while len(rows) + len(batch) < n and attempt < budget:
            rng = random.Random(f"{seed}:{attempt}")
            row = make_row(rng.choice(turns[attempt % len(turns)]), rng)
            attempt += 1
            if row["program"] not in seen and split in (None, row["split"]):
                seen.add(row["program"])
                batch.append(row)
        verified = verify_rows(batch)
        if not all(verified):
            log.warning("dropped %d generated programs that failed their sandbox check", verified.count(False))
        rows += [row for row, good in zip(batch, verified, strict=True) if good]
    if len(rows) < n:
        raise ValueError(
            f"only {len(rows)} distinct programs for difficulty={difficulty} families={families} split={split}"
        )
    return tuple(rows)


def generate_corpus(
    seed: int, n: int, difficulty: int | None = None, families: list[str] | None = None, split: str | None = None
) -> list[dict]:
    """``n`` distinct verified rows, deterministic in the arguments; ``split=None`` mixes train and eval rows."""
    if split not in (None, *SPLITS):
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if difficulty not in (None, 1, 2, 3):
        raise ValueError(f"difficulty must be 1, 2, 3 or None, not {difficulty!r}")
    unknown = sorted(set(families or ()) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown program families {unknown}; known: {', '.join(FAMILIES)}")
    fams = tuple(f for f in FAMILIES if not families or f in families)
    return [dict(row) for row in _corpus(seed, n, difficulty, fams, split)]
