#!/usr/bin/env python3
"""The C ABI of libauthcore, written out and compared with the committed list.

    python3 ffi-c/abi/abi.py PREFIX            compare with ffi-c/abi/authcore.abi
    python3 ffi-c/abi/abi.py PREFIX --update   rewrite ffi-c/abi/authcore.abi

PREFIX is where `ffi-c/install.sh` installed the library. What is listed, one fact a line:
the soname; every exported symbol (from the shared library's dynamic symbol table);
every function's prototype, every function-pointer type and every enumerator with its
value (from the installed header); and every public struct's size, alignment and each
member's offset and size (compiled and measured with the C compiler, x86_64 LP64).

The rule (README, Versions): the soname changes only with a breaking change, and every
breaking change changes it. A line that disappears or changes is a breaking change: it
fails unless the soname in build.rs and install.sh changed too. Lines only added (a new
function, a field at the end of a size-versioned struct) are compatible; they fail
until the list is updated with --update, so that every ABI change is committed on
purpose.
"""

from __future__ import annotations

import difflib
import os
import platform
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LIST = os.path.join(HERE, "authcore.abi")
# Structs handed over with their size (authcore_client_stats, ..._store_callbacks_v2):
# members are only ever added at the end, so a larger size is compatible.
SIZE_VERSIONED = {"authcore_stats", "authcore_store_callbacks"}


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return text


def squash(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s*([(),;*])\s*", r"\1", text)
    text = re.sub(r"(\w)(\*+)", r"\1 \2", text)
    return text.replace(",", ", ")


# Words that end a parameter's type rather than name the parameter (`unsigned int`).
TYPE_WORDS = {"void", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "_Bool", "bool"}


def unnamed(decl: str) -> str:
    """A prototype, or a function pointer's type (`RET (*name)(params)`, a typedef or a
    struct member), without its parameter names: renaming a parameter breaks neither the
    ABI nor a caller's source."""
    m = re.fullmatch(r"(.*?\(\s*\*\s*\w+\s*\)\s*\()(.*)\)", decl) or re.fullmatch(r"(.*?\()(.*)\)", decl)
    if m is None or "(" in m.group(2):
        return decl
    params = []
    for param in (p.strip() for p in m.group(2).split(",")):
        n = re.fullmatch(r"(.*?[\s*])(\w+)", param)
        if n is not None and n.group(2) not in TYPE_WORDS and n.group(1).strip():
            param = n.group(1).rstrip()
        params.append(param)
    return m.group(1) + ", ".join(params) + ")"


def header_facts(header: str) -> tuple[list[str], list[tuple[str, list[str]]], set[str]]:
    """Lines for prototypes, function-pointer types and enums; the structs with their
    member names; the names of the declared functions."""
    text = strip_comments(header)
    lines: list[str] = []
    # Object-like macros with a value are part of the API (a limit, a version); the
    # include guard (no value) and function-like macros (the deprecation attribute) not.
    for m in re.finditer(r"^\s*#\s*define\s+(\w+)[ \t]+(\S[^\n]*)$", text, flags=re.M):
        lines.append(f"define {m.group(1)} {' '.join(m.group(2).split())}")
    # The other preprocessor lines (include guard, C++ guards, the deprecation macro)
    # carry no ABI.
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"extern \"C\" \{|\}\s*$", " ", text)
    text = re.sub(r"AUTHCORE_DEPRECATED\s*\((?:[^()]|\"[^\"]*\")*\)", " ", text)
    structs: list[tuple[str, list[str]]] = []
    functions: set[str] = set()

    # Enums: `enum NAME : uint32_t? { A = 0, ... };` (cbindgen's C++ and C23 variant removed
    # with the preprocessor lines above).
    for m in re.finditer(r"\benum (\w+)\s*(?::\s*\w+\s*)?\{(.*?)\}\s*;", text, flags=re.S):
        name, body = m.group(1), m.group(2)
        value = -1
        for item in filter(None, (i.strip() for i in body.split(","))):
            if "=" in item:
                key, expr = (s.strip() for s in item.split("=", 1))
                value = int(expr, 0)
            else:
                key, value = item, value + 1
            lines.append(f"enum {name} {key} = {value}")
    text = re.sub(r"\benum (\w+)\s*(?::\s*\w+\s*)?\{.*?\}\s*;", " ", text, flags=re.S)

    # Structs with a body: `typedef struct { members } NAME;`.
    for m in re.finditer(r"typedef struct\s*\{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
        body, name = m.group(1), m.group(2)
        members = []
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            fn = re.match(r".*\(\s*\*\s*(\w+)\s*\)", decl, flags=re.S)
            members.append(fn.group(1) if fn else re.findall(r"(\w+)\s*(?:\[[^\]]*\])?$", decl)[0])
            lines.append(f"member {name} {unnamed(squash(decl))}")
        structs.append((name, members))
    text = re.sub(r"typedef struct\s*\{.*?\}\s*\w+\s*;", " ", text, flags=re.S)

    for decl in filter(None, (squash(d) for d in text.split(";"))):
        if decl.startswith("typedef struct ") or decl.startswith("typedef enum "):
            lines.append(f"type {decl[len('typedef '):]}")
        elif decl.startswith("typedef "):
            lines.append(f"typedef {unnamed(decl[len('typedef '):])}")
        else:
            name = re.search(r"(\w+)\s*\(", decl)
            if name is None:
                raise SystemExit(f"abi.py: cannot read this declaration: {decl}")
            functions.add(name.group(1))
            lines.append(f"function {unnamed(decl)}")
    return lines, structs, functions


def struct_layouts(prefix: str, structs: list[tuple[str, list[str]]]) -> list[str]:
    src = ["#include <stddef.h>", "#include <stdio.h>", "#include <authcore.h>", "int main(void) {"]
    for name, members in structs:
        src.append(f'printf("layout {name} size %zu align %zu\\n", sizeof({name}), _Alignof({name}));')
        for member in members:
            src.append(
                f'printf("layout {name}.{member} offset %zu size %zu\\n", '
                f"offsetof({name}, {member}), sizeof((({name} *)0)->{member}));"
            )
    src.append("return 0; }")
    with tempfile.TemporaryDirectory() as work:
        c = os.path.join(work, "layout.c")
        exe = os.path.join(work, "layout")
        with open(c, "w") as f:
            f.write("\n".join(src) + "\n")
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-std=c11", "-I", os.path.join(prefix, "include"), c, "-o", exe], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def library_facts(prefix: str) -> tuple[str, list[str]]:
    lib = os.path.join(prefix, "lib", "libauthcore.so")
    dynamic = subprocess.run(["readelf", "-d", lib], check=True, capture_output=True, text=True).stdout
    soname = re.search(r"Library soname: \[([^\]]+)\]", dynamic)
    if soname is None:
        raise SystemExit(f"abi.py: {lib} has no soname")
    nm = subprocess.run(
        ["nm", "-D", "--defined-only", "--format=posix", lib], check=True, capture_output=True, text=True
    ).stdout
    symbols = sorted(
        line.split()[0] for line in nm.splitlines() if line.split()[1] in "TtDdBbRrVvWwGgSsi"
    )
    return soname.group(1), symbols


def describe(prefix: str) -> tuple[list[str], list[str]]:
    with open(os.path.join(prefix, "include", "authcore.h")) as f:
        lines, structs, functions = header_facts(f.read())
    soname, symbols = library_facts(prefix)
    problems = []
    exported = set(symbols)
    for name in sorted(functions - exported):
        problems.append(f"{name} is declared in authcore.h but not exported by libauthcore.so")
    for name in sorted(exported - functions):
        problems.append(f"{name} is exported by libauthcore.so but not declared in authcore.h")
    facts = [f"soname {soname}"] + [f"symbol {s}" for s in symbols]
    facts += sorted(lines) + struct_layouts(prefix, structs)
    return facts, problems


def grown(line: str, facts: list[str]) -> bool:
    """A size-versioned struct's size line that only grew."""
    m = re.fullmatch(r"layout (\w+) size (\d+) align (\d+)", line)
    if m is None or m.group(1) not in SIZE_VERSIONED:
        return False
    for fact in facts:
        n = re.fullmatch(rf"layout {m.group(1)} size (\d+) align {m.group(3)}", fact)
        if n is not None:
            return int(n.group(1)) > int(m.group(2))
    return False


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--update"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    if platform.machine() != "x86_64":
        print(f"abi.py: the committed layouts are x86_64's; nothing checked on {platform.machine()}")
        return 0
    facts, problems = describe(args[0])
    for problem in problems:
        print(f"abi.py: {problem}", file=sys.stderr)
    if problems:
        return 1
    text = "".join(f"{line}\n" for line in facts)
    if "--update" in sys.argv:
        with open(LIST, "w") as f:
            f.write(text)
        print(f"abi.py: wrote {len(facts)} lines to {os.path.relpath(LIST)}")
        return 0
    with open(LIST) as f:
        committed = f.read().splitlines()
    if committed == facts:
        print(f"abi.py: the C ABI matches {os.path.relpath(LIST)} ({len(facts)} lines)")
        return 0
    removed = [line for line in committed if line not in facts and not grown(line, facts)]
    added = [line for line in facts if line not in committed]
    sys.stderr.writelines(
        line + "\n" for line in difflib.unified_diff(committed, facts, "committed", "built", lineterm="", n=0)
    )
    old_soname = next((line for line in committed if line.startswith("soname ")), "")
    new_soname = facts[0]
    if removed and old_soname == new_soname:
        print(
            f"abi.py: BREAKING: {len(removed)} line(s) of the committed ABI changed or went away "
            f"while the soname stayed {new_soname.split()[1]}. Keep the old ABI, or bump the soname "
            "in ffi-c/build.rs (install.sh and the checks read it from the library) and the major "
            "version (the minor while it is 0), add the change to CHANGELOG.md, then run with --update.",
            file=sys.stderr,
        )
    elif not removed:
        print(
            f"abi.py: {len(added)} compatible addition(s) to the ABI; record them with "
            "`python3 ffi-c/abi/abi.py PREFIX --update` and commit ffi-c/abi/authcore.abi.",
            file=sys.stderr,
        )
    else:
        print("abi.py: the soname changed; record the new ABI with --update.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
