"""The public coder API: what a coder is handed cannot lead it to the reference code, the module is light
to import, and third-party factories get the narrow CoderOptions."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import BENCHMARK
from pytest_medcode.api import CallFailed, Coder, CoderOptions, CoderUnavailable, Question, Reply
from pytest_medcode.codesystems import load_system
from pytest_medcode.plugin.hooks import session_key

# -- a walk over everything reachable from an object ------------------------------------------------


def reachable_strings(root: object, limit: int = 20_000) -> list[str]:
    """Every string reachable from ``root`` through its data: attributes, ``__dict__``, ``__slots__``,
    dataclass fields, properties, container items and ``gc.get_referents`` (bounded). Classes, modules
    and functions are not followed: they are the program, not what was handed over (from them, any
    Python code can reach the whole interpreter)."""
    seen: set[int] = set()
    keep: list[object] = []  # values made on the way (property results) stay alive, so ids stay unique
    stack: list[object] = [root]
    found: list[str] = []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or _is_program(obj):
            continue
        seen.add(id(obj))
        keep.append(obj)
        if len(seen) > limit:
            raise AssertionError(f"more than {limit} objects reachable: the walk is not bounded")
        strings, whole = _own_strings(obj)
        found += strings
        if not whole:
            stack.extend(_children(obj))
    return found


def _is_program(obj: object) -> bool:
    """Classes, modules, functions, code and frames: the walk does not follow them (see reachable_strings)."""
    import types

    return isinstance(obj, type | types.ModuleType | types.FunctionType | types.BuiltinFunctionType
                      | types.MethodType | types.CodeType | types.FrameType | types.MethodWrapperType
                      | types.WrapperDescriptorType | types.GetSetDescriptorType | types.MemberDescriptorType)


def _own_strings(obj: object) -> tuple[list[str], bool]:
    """The strings an object shows by itself, and whether that is all of it (a scalar holds nothing more)."""
    from pathlib import PurePath

    if isinstance(obj, str):
        return [obj], True
    if isinstance(obj, bytes | bytearray):
        return [bytes(obj).decode("utf-8", "replace")], True
    if isinstance(obj, int | float | complex | bool) or obj is None:
        return [str(obj)], True
    if isinstance(obj, PurePath):
        return [str(obj), repr(obj)], False
    return [repr(obj)], False


def _children(obj: object) -> list[object]:
    """What ``obj`` holds: its referents, items, dataclass fields, ``__dict__``, slots, properties and
    attributes, and the chat of anything that has one."""
    import dataclasses
    import gc
    import types

    children: list[object] = list(gc.get_referents(obj))
    if isinstance(obj, dict | types.MappingProxyType):
        children += [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children += list(obj)
    if dataclasses.is_dataclass(obj):
        children += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    children += list(getattr(obj, "__dict__", {}).values())
    children += _class_members(obj)
    # plain attributes the steps above missed (a __getattr__, a descriptor)
    children += _readable(obj, [name for name in dir(obj) if not name.startswith("__")])
    if hasattr(obj, "chat") and callable(obj.chat):
        children.append(obj.chat())
    return children


def _class_members(obj: object) -> list[object]:
    """The values of ``obj``'s slots and properties, class by class along its MRO."""
    members: list[object] = []
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        members += [getattr(obj, slot) for slot in ((slots,) if isinstance(slots, str) else slots)
                    if hasattr(obj, slot)]
        # a property that needs more than the object: nothing handed over
        members += _readable(obj, [name for name, member in klass.__dict__.items() if isinstance(member, property)])
    return members


def _readable(obj: object, names: list[str]) -> list[object]:
    """The values of those attributes of ``obj`` that can be read; one that raises is left out."""
    import contextlib  # here, not at the top: this source is copied into a module of its own

    values: list[object] = []
    for name in names:
        with contextlib.suppress(Exception):
            values.append(getattr(obj, name))
    return values


def mentions(strings: list[str], code: str) -> list[str]:
    """The strings that name ``code``, dotted or not, as a whole token (E11.9 is not in E11.90)."""
    import re

    forms = {code, code.replace(".", "")}
    pattern = re.compile("|".join(rf"(?<![A-Za-z0-9.]){re.escape(f)}(?![A-Za-z0-9])" for f in forms))
    return [s for s in strings if pattern.search(s)]


# the functions the spy product module is given (it has no other code of this file, and no imports they need)
WALK = (reachable_strings, _is_program, _own_strings, _children, _class_members, _readable, mentions)


def test_the_walk_finds_a_code_wherever_it_hides() -> None:
    """The walk is not blind: a code in a field, a slot, a dict value, a nested tuple, a property, an
    object's __dict__ or a path is found, dotted or undotted."""

    class Slotted:
        __slots__ = ("hidden",)

        def __init__(self) -> None:
            self.hidden = ("x", {"deep": ["E119"]})

    class Computed:
        @property
        def answer(self) -> str:
            return "the code is E11.9"

    @dataclasses.dataclass(frozen=True)
    class Holder:
        payload: object

    for carrier in (Slotted(), Computed(), Holder(Holder(types.SimpleNamespace(x=Path("/codes/E11.9.csv")))),
                    types.MappingProxyType({"k": "E11.9"})):
        assert mentions(reachable_strings(carrier), "E11.9"), carrier
    assert not mentions(["E11.90", "ME11.9", "Code: M24.131"], "E11.9")


# -- no coder can reach the reference code ---------------------------------------------------------


def _configured(pytester: pytest.Pytester, *args: str):
    """A real session, configured as pytest configures it (no case is asked)."""
    return pytester.parseconfigure("--model", "openai/m", "--medcode-api-base", "http://127.0.0.1:9/v1", *args)


def test_no_question_and_no_coder_options_lead_to_the_reference_code(pytester) -> None:
    """Real ICD-10-CM and ICD-9-CM cases, through every variant that needs no download, two temperatures
    and two repeats: the reference code appears nowhere in what the session hands a coder. Cases whose
    code is the prompt's own example code are left out (that code is in every prompt)."""
    codeset = pytester.path / "cpt.csv"  # a user's code table: its path is in the coder options
    codeset.write_text("code,description\n99213,Office visit\n84120,Porphyrins\n")
    config = _configured(pytester, "--medcode-system", "icd10cm,icd9cm", "--medcode-sample", "60",
                         "--medcode-seed", "7", "--medcode-variant", "exact,abbrev,typo,reorder,lay",
                         "--medcode-temperature", "0.2,0.9", "--medcode-repeats", "2",
                         "--medcode-codeset", f"cpt={codeset}")
    session = config.stash[session_key]
    examples = {name: session.system(name).example for name in ("icd10cm", "icd9cm")}
    cases = [c for c in session.cases() if c.code.replace(".", "") != examples[c.system].replace(".", "")]
    assert len(cases) >= 2 * 59 * 5 * 2 * 2 and {c.system for c in cases} == {"icd10cm", "icd9cm"}
    leaks = {}
    for case in cases:
        question = session.request_for(case)
        assert question.description == case.asked_description  # the walk sees the real question
        if found := mentions(reachable_strings(question), case.code):
            leaks[case.id] = found
    assert leaks == {}
    options = session.settings.coder_options()
    assert isinstance(options, CoderOptions) and options.codesets == {"cpt": codeset}
    option_strings = reachable_strings(options)
    assert str(codeset) in option_strings
    assert {c.id: hit for c in cases if (hit := mentions(option_strings, c.code))} == {}


def test_the_case_id_is_stable_and_made_of_the_question_alone() -> None:
    question = Question("icd10cm", "Cholera", (("user", "q"),), 0.2, 50)
    assert question.case_id == Question("icd10cm", "Cholera", (("user", "other prompt"),), 0.2, 50).case_id
    assert question.case_id == "f555903a0dd6c351"  # the same on every machine and in every run
    assert len({question.case_id, Question("icd9cm", "Cholera", (), 0.2, 50).case_id,
                Question("icd10cm", "Cholera", (), 0.2, 50, repeat=1).case_id,
                Question("icd10cm", "Cholera", (), 0.9, 50).case_id}) == 4
    assert question.chat() == [{"role": "user", "content": "q"}]


SPY = '''
import inspect, json, threading
from pytest_medcode.api import Question

_CODES = {codes!r}
_OUT = {out!r}
_LOCK = threading.Lock()


def spy(*args, **kwargs):
    """Records everything it is handed and looks for every reference code of the run in it."""
    handed = (args, kwargs)
    strings = reachable_strings(handed)
    found = sorted({{code for code in _CODES if mentions(strings, code)}})
    with _LOCK, open(_OUT, "a") as out:
        out.write(json.dumps({{"types": [type(a).__qualname__ for a in args], "kwargs": sorted(kwargs),
                               "description": args[0].description, "system": args[0].system,
                               "case_id": args[0].case_id, "found": found}}) + "\\n")
    return "Code: none"
'''


def test_a_python_coder_run_through_the_plugin_finds_no_reference_code(pytester) -> None:
    """A ``python:`` product that knows every code of the run (it reads the codes file) and searches all it is
    handed, through the real plugin, for any of them: it finds none, and it was handed one Question per case."""
    pairs = [p for p in load_system("icd10cm").billable_codes()[::9000]][:8]
    codes = [code for code, _ in pairs]
    (pytester.path / "codes.csv").write_text("code\n" + "\n".join(codes) + "\n")
    out = pytester.path / "spy.jsonl"
    helpers = "import dataclasses, gc, re, types\nfrom pathlib import Path\n\n" + "\n\n".join(
        inspect.getsource(f) for f in WALK)
    pytester.makepyfile(spy_product=helpers + SPY.format(codes=codes, out=str(out)), test_code_query=BENCHMARK)
    pytester.syspathinsert()
    result = pytester.runpytest("--model", "python:spy_product:spy", "--medcode-system", "icd10cm",
                                "--medcode-codes", str(pytester.path / "codes.csv"), "--medcode-variant",
                                "exact,typo", "--medcode-no-cache", "--medcode-no-similarity", "-p",
                                "no:cacheprovider")
    result.assert_outcomes(failed=16)  # the spy answers no code: every case is asked, and fails
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(seen) == 16
    assert {(tuple(s["types"]), tuple(s["kwargs"])) for s in seen} == {(("Question",), ())}
    assert {s["description"] for s in seen} >= {description for _, description in pairs}
    assert len({s["case_id"] for s in seen}) == 16
    assert [s["found"] for s in seen] == [[]] * 16


# -- importing the API is light --------------------------------------------------------------------


def test_importing_the_api_loads_neither_pytest_nor_pyarrow_nor_numpy() -> None:
    for module in ("pytest_medcode.api", "pytest_medcode", "pytest_medcode.asking.coders"):
        probe = f"import {module}, sys; print(sorted(m for m in ('pytest','pyarrow','numpy') if m in sys.modules))"
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout.strip()) == (0, "[]"), (module, done.stderr[-2000:])


def test_the_api_module_holds_the_public_types() -> None:
    import pytest_medcode.asking.coders as coders
    import pytest_medcode.asking.coders.base as base

    for name in ("Question", "Reply", "CallFailed", "CoderUnavailable", "Coder", "CoderOptions"):
        assert getattr(coders, name) is getattr(base, name) is getattr(sys.modules["pytest_medcode.api"], name)
    assert issubclass(CallFailed, Exception) and issubclass(CoderUnavailable, Exception)
    assert Reply("Code: A00.0").usage == {}
    assert {"name", "cacheable", "identity", "check", "answer", "close"} <= set(dir(Coder)) | set(
        Coder.__annotations__)
    options = CoderOptions(codesets={"cpt": "cpt.csv"})
    assert options.codesets == {"cpt": Path("cpt.csv")}
    with pytest.raises(TypeError):
        options.codesets["icd10cm"] = Path("x")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.timeout = 1.0  # type: ignore[misc]


def test_every_built_in_coder_has_the_whole_protocol() -> None:
    from pytest_medcode.asking.coders import resolve_coder

    options = CoderOptions(api_base="http://127.0.0.1:9/v1")
    for name in ("lookup", "rag:lookup", "verify:lookup", "python:os.path:basename", "local:smollm2",
                 "openai/m", "gpt-4o"):
        coder = resolve_coder(name, options)
        for member in ("identity", "check", "answer", "close"):
            assert callable(getattr(type(coder), member, None)), (name, member)
        assert isinstance(coder, Coder) and coder.name == name
        coder.close()  # nothing started: closing is a no-op, never an error


# -- a third-party coder through a real entry point ------------------------------------------------

ACME = '''
import json
from pytest_medcode.api import Reply

TABLE = {table!r}
OUT = {out!r}


class AcmeCoder:
    cacheable = False

    def __init__(self, name, options):
        self.name = name
        self.options = options

    def identity(self):
        return {{"coder": "acme"}}

    def check(self):
        pass

    async def answer(self, question):
        return Reply("Code: " + TABLE.get(question.description, "none"))

    def close(self):
        with open(OUT, "a") as out:
            out.write(json.dumps({{"closed": self.name}}) + "\\n")


class OldCoder(AcmeCoder):
    close = None  # written before coders had close()


def make_old(name, options):
    return OldCoder(name, options)


def make(name, options):
    with open(OUT, "a") as out:
        out.write(json.dumps({{"name": name, "type": type(options).__module__ + "." + type(options).__qualname__,
                               "fields": {{k: v for k, v in vars(options).items() if k != "codesets"}},
                               "codesets": {{k: str(v) for k, v in options.codesets.items()}}}}) + "\\n")
    return AcmeCoder(name, options)
'''


def test_a_third_party_factory_from_an_entry_point_gets_coder_options(pytester) -> None:
    """A package that declares ``[pytest_medcode.coders] acme = acme_coders:make`` (a dist-info on the path,
    as pip would install it) is called with the name and a CoderOptions, answers, and is closed."""
    pairs = load_system("icd10cm").billable_codes()[:3]
    out = pytester.path / "acme.jsonl"
    pytester.makepyfile(acme_coders=ACME.format(table={d: c for c, d in pairs}, out=str(out)),
                        test_code_query=BENCHMARK)
    dist = pytester.mkdir("acme_coders-1.0.dist-info")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-coders\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_medcode.coders]\nacme = acme_coders:make\n"
                                           "acme-old = acme_coders:make_old\n")
    (pytester.path / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in pairs) + "\n")
    table = pytester.path / "icd10cm-table.csv"  # the user's own table: its path reaches the factory
    table.write_text("code,description\n" + "".join(f'{c},"{d}"\n' for c, d in pairs))
    pytester.syspathinsert()
    result = pytester.runpytest("--model", "acme", "--medcode-system", "icd10cm", "--medcode-codes",
                                str(pytester.path / "codes.csv"), "--medcode-codeset", f"icd10cm={table}",
                                "--medcode-api-base", "http://127.0.0.1:9/v1", "--medcode-timeout", "12",
                                "--medcode-rag-k", "7", "--medcode-verify-rounds", "1", "--medcode-no-cache",
                                "--medcode-no-similarity", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    made, closed = [json.loads(line) for line in out.read_text().splitlines()]
    assert made == {"name": "acme", "type": "pytest_medcode.api.CoderOptions",
                    "fields": {"api_base": "http://127.0.0.1:9/v1", "timeout": 12.0, "rag_k": 7, "verify_rounds": 1,
                               "confidence": False},
                    "codesets": {"icd10cm": str(table)}}
    assert closed == {"closed": "acme"}
    result = pytester.runpytest("--model", "acme-old", "--medcode-sample", "1", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--model acme-old: the coder made by acme_coders:make_old has no close() "
                                 "(see pytest_medcode.api.Coder)*"])



def test_the_response_cache_key_is_the_one_earlier_releases_wrote(pytester) -> None:
    """The keys computed before coders were handed a Question (from the request's case-less fields): a cache
    filled by an earlier release still answers the same cases."""
    codes = pytester.path / "codes.csv"
    codes.write_text("code,system\nE11.9,icd10cm\nI10,icd10cm\n250.00,icd9cm\n")
    config = _configured(pytester, "--model", "rag:openai/m", "--medcode-system", "icd10cm,icd9cm",
                         "--medcode-codes", str(codes), "--medcode-variant", "exact,typo",
                         "--medcode-repeats", "2", "--medcode-temperature", "0.2,0.7")
    session = config.stash[session_key]
    keys = {c.id: session.key_for(c.model, session.request_for(c)) for c in session.cases()}
    assert len(keys) == 48
    assert {i: keys[i] for i in ("openai/m-icd10cm-E11.9-t0.2-r0", "openai/m-icd9cm-250.00-typo-t0.7-r1",
                                 "rag:openai/m-icd10cm-I10-t0.7-r1")} == {
        "openai/m-icd10cm-E11.9-t0.2-r0": "a9206b3cac3aaa0572cacd903ddc3fc861381b58139b94da29d38c6a3132d500",
        "openai/m-icd9cm-250.00-typo-t0.7-r1": "49ac352f53fd4723348195d07fef499f8fc4fe19bd0145cc805f5161d3f1f234",
        "rag:openai/m-icd10cm-I10-t0.7-r1": "331a1532f700f4770585d02c612073388945ad275d1a1575677c26ecc962e658",
    }
    # one temperature and one asking: the same question, so the same key as t0.2-r0 above
    single = _configured(pytester, "--medcode-system", "icd10cm", "--medcode-codes", str(codes)).stash[session_key]
    (case,) = [c for c in single.cases() if c.code == "E11.9"]
    assert single.key_for(case.model, single.request_for(case)) == keys["openai/m-icd10cm-E11.9-t0.2-r0"]
