"""The mapping engine: runs an EC2 action from its mapping (mappings/<Action>.yaml).

`Engine(config, one, sessions, mappings_dir).run(action, body, ctx)` → result dict keyed by the
botocore member names of the action's output shape. OpenNebula calls run as the requesting
user (server_cipher session); `admin: true` calls (elastic-IP leases) use the server admin
session. Every failure is an Ec2Error.

Where the threads are: a mapping whose first oned call is its `source:` (the Describe*
actions) makes that call on the event loop without blocking (OneClient.exchange_async); a
small answer (up to INLINE_MAX bytes) is then read, viewed and rendered right there, unless
something on the way needs another oned call (a hook): then, as for every other action, the
whole job runs in the engine's thread pool, where oned calls block (the answer received is
reused, not asked for again).

`DryRun=true`: the action runs as usual, every check included (ids, visibility, states), but
with a client that answers DryRunOperation instead of sending the first oned call that would
change something (handlers' scripts likewise); an action that changes nothing answers
DryRunOperation at its end. So a dry run fails where the real request would, except on a
right oned alone decides at the change (MANAGE through sharing or ACLs), which is not tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lxml import etree

from econe.config import Config
from econe.context import RequestContext
from econe.errors import Ec2Error, dry_run_succeeded, missing_parameter
from econe.mapping.expr import Expressions
from econe.mapping.filters import compile_filters, paginate
from econe.mapping.ids import MAX_ONE_ID, parse_id
from econe.mapping.loader import Call, Mapping, load_mappings
from econe.mapping.onecall import OneError, OneUnavailable, call_one, error_name, map_error
from econe.mapping.views import View
from econe.one.client import ACTION, NeedsOned, Prefetched, no_blocking
from econe.paths import data_dir
from econe.query import as_list

log = logging.getLogger("econe.engine")

_PARSER = etree.XMLParser(
    huge_tree=True, resolve_entities=False, no_network=True, remove_blank_text=False
)


# The largest oned answer read on the event loop thread (~35 extended VM bodies): reading one
# takes about a millisecond, less than handing it over to a worker thread; larger ones go to
# a worker, so no request holds up the others for long.
INLINE_MAX = 256 << 10

_CONTAINERS = (dict, list)  # a tuple: isinstance() on it is much faster than on `dict | list`


def strip_hidden(value: Any) -> Any:
    """Drop internal view fields (names starting with `_`) and absent (None) members."""
    if isinstance(value, dict):
        return {
            k: strip_hidden(v) if isinstance(v, _CONTAINERS) else v
            for k, v in value.items()
            if v is not None and k[:1] != "_"
        }
    if isinstance(value, list):
        return [strip_hidden(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


@contextlib.contextmanager
def _internal_errors(action: str) -> Iterator[None]:
    """Any failure that is not an Ec2Error: logged, and an InternalError for the client."""
    try:
        yield
    except Ec2Error:
        raise
    except Exception as exc:
        log.exception("%s failed", action)
        raise Ec2Error(
            "InternalError", f"{action} failed on the server; see the server log"
        ) from exc


def _answer_failed(m: Mapping, exc: Exception) -> Ec2Error:
    """A failure after `each` changed something (an `after:` hook, the output, its document):
    the administrator's mapping bug, logged as such. The client learns the change was made,
    with a 4xx: an InternalError (500) would have SDKs send the done write again."""
    log.error(
        "%s: the change was made, but its answer failed; fix %s (output:/after:)",
        m.action,
        m.path,
        exc_info=exc,
    )
    return Ec2Error(
        "ChangeMadeAnswerFailed",
        f"{m.action} was carried out, but the server failed to write its answer (see the "
        "server log). Do not repeat the request: describe the resources to see their state.",
    )


def reads_only(method: str) -> bool:
    """Whether an oned method only reads (`*.info*`, the system's version and config)."""
    return method.rpartition(".")[2].startswith("info") or method in (
        "one.system.version",
        "one.system.config",
    )


class DryRunClient:
    """The oned client of a DryRun request: reads go through; a call that would change
    something answers DryRunOperation instead of reaching oned."""

    def __init__(self, client: Any):
        self._client = client

    def call(self, session: str, method: str, *args: Any) -> Any:
        if not reads_only(method):
            raise dry_run_succeeded()
        return self._client.call(session, method, *args)

    def call_xml(self, session: str, method: str, *args: Any, **kw: Any) -> Any:
        if not reads_only(method):
            raise dry_run_succeeded()
        call_xml = getattr(self._client, "call_xml", None)
        if call_xml is None:
            return self._client.call(session, method, *args)
        return call_xml(session, method, *args, **kw)


class Runtime:
    """One request's view of the engine; handlers receive it (`handler(rt) -> dict`).
    Handlers call oned through `rt.call` or `rt.one` (never `rt.engine.one`), and check
    `rt.dry_run` before anything else that changes the world (a script)."""

    def __init__(
        self,
        engine: Engine,
        mapping: Mapping,
        body: dict,
        ctx: RequestContext,
        answered: Any = None,
    ):
        self.engine = engine
        self.mapping = mapping
        self.body = body
        self.ctx = ctx
        self.config: Config = engine.config
        self.principal = ctx.principal
        self._session: str | None = None
        self._answered = answered  # a call's answer received beforehand (OneClient.answered)
        self.dry_run = body.get("DryRun") is True
        one = engine.one
        if answered is not None and answered.prefetched:
            one = Prefetched(one, answered.prefetched)
        self.one: Any = DryRunClient(one) if self.dry_run else one

    # -- OpenNebula --------------------------------------------------------------------------
    @property
    def session(self) -> str:
        if self._session is None:
            self._session = self.engine.sessions.session_for(self.principal.name)
        return self._session

    def admin_session(self) -> str:
        return self.engine.sessions.admin_session()

    def call(
        self,
        method: str,
        *args: Any,
        errors: dict[str, str] | None = None,
        admin: bool = False,
        not_found: str | None = None,
        resource: str = "",
    ) -> Any:
        """One blocking oned call (handlers run in the engine's thread pool already)."""
        table = {k: (v, None) for k, v in (errors or {}).items()}
        session = self.admin_session() if admin else self.session
        return call_one(self.one, session, method, list(args), table, {}, not_found, resource)

    def fetch(self, method: str, number: int, missing: Ec2Error) -> etree._Element:
        """One object by number as the user sees it (`method`: one.vm.info, one.image.info…):
        `missing` when oned has none, it is another user's, or the number is beyond oned's."""
        if number > MAX_ONE_ID:
            raise missing
        nope = {"NO_EXISTS": missing.code, "AUTHORIZATION": missing.code}
        try:
            return self.xml(self.call(method, number, errors=nope))
        except Ec2Error as exc:
            if exc.code == missing.code:
                raise missing from None
            raise

    def run_call(
        self,
        call: Call,
        scope: dict,
        not_found: str | None = None,
        xml: bool = False,
        pool: tuple[str, str] | None = None,
    ) -> Any:
        """`xml=True`: the answer is an XML document, given parsed when the client can (with
        `pool`, as a list of roots: see OneClient.call_xml)."""
        session = self.admin_session() if call.admin else self.session
        args = call.args(scope)
        client = self.one
        if self._answered is not None and self._answered.answers(call.method, args):
            client, self._answered = self._answered, None  # used once
        return call_one(
            client,
            session,
            call.method,
            args,
            call.errors,
            scope,
            not_found,
            xml=xml,
            pool=pool,
        )

    @staticmethod
    def xml(text: Any) -> etree._Element:
        if isinstance(text, etree._Element):
            return text
        try:
            return etree.fromstring(
                text.encode("utf-8") if isinstance(text, str) else text, _PARSER
            )
        except (etree.XMLSyntaxError, ValueError, AttributeError) as exc:
            raise Ec2Error("InternalError", "OpenNebula answered with unreadable XML") from exc

    def view(self, name: str, element: etree._Element) -> dict[str, Any]:
        return self.engine.views[name].apply(element, self.scope())

    def filter(self, items: list[dict]) -> list[dict]:
        """The request's `Filter.N` applied with this mapping's `filters:` (for handlers)."""
        for predicate in self.filters():
            items = [i for i in items if predicate(i)]
        return items

    def filters(self) -> list[Callable[[dict], bool]]:
        """The request's `Filter.N` as predicates (unknown names: InvalidParameterValue)."""
        known = self.engine.known_filters.get(self.mapping.action, frozenset())
        filters = self.mapping.filters or {}
        return compile_filters(self.body.get("Filter"), filters, known, self.engine.id_prefixes)

    def scope(self, **extra: Any) -> dict[str, Any]:
        return {
            "body": self.body,
            "principal": self.principal,
            "config": self.config,
            "options": self.mapping.options,
            "now": int(time.time()),
            **extra,
        }


class _Turn:
    """One user's requests in Engine.run: those running hold `running`; `requests` counts
    those running or waiting (the entry goes when none is left)."""

    __slots__ = ("running", "requests")

    def __init__(self, running: asyncio.Semaphore):
        self.running = running
        self.requests = 0


class Engine:
    def __init__(
        self,
        config: Config,
        one: Any,
        sessions: Any,
        mappings_dir: Path | None = None,
        max_workers: int = 16,
    ):
        self.config = config
        self.one = one
        self.sessions = sessions
        self.mappings_dir = Path(mappings_dir) if mappings_dir else data_dir("mappings")
        self.exprs = Expressions()
        self.views: dict[str, View] = {}
        self.mappings: dict[str, Mapping] = load_mappings(self.mappings_dir, self.exprs, self.views)
        # the kinds of ids the views format (i, ami, sg…): filters take their short forms too
        self.id_prefixes = frozenset().union(*(v.id_prefixes for v in self.views.values()))
        # compiled things handlers keep for the life of the engine (e.g. instance-type templates)
        self.cache: dict[Any, Any] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="econe-one")
        # oned calls made on an event loop: no more at once than the pool's threads make
        self._max_calls = max_workers
        # one user's requests running at once, at most (Engine.run): half the workers, and
        # never fewer than two (a poll waiting on oned beside an action, even in a tiny pool)
        self._per_user = max(2, max_workers // 2)
        self._turns: weakref.WeakKeyDictionary[Any, dict[str, _Turn]] = weakref.WeakKeyDictionary()
        self._call_slots: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        # set by close(): background work started by handlers (deferred terminations) stops
        self.closing = threading.Event()
        # action → the filter names EC2 documents (the spec's x-econe-filters; set by the app):
        # those the mapping does not map match nothing instead of being an error
        self.known_filters: dict[str, frozenset[str]] = {}

    def actions(self) -> list[str]:
        return sorted(self.mappings)

    def close(self) -> None:
        self.closing.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(
        self,
        action: str,
        body: dict,
        ctx: RequestContext,
        render: Callable[[dict], Any] | None = None,
    ) -> Any:
        """The action's result dict; with `render`, what `render(result)` makes of it, where
        the job ran (the wire path: the serializer writes only the members the spec names, so
        the result is not stripped of hidden fields first; a large answer's document is built
        in a worker, never on the event loop). One user's requests run at most PER_USER at
        once; the others wait their turn, so that one user's flood of requests cannot hold
        every worker and oned connection while everyone else waits."""
        user = getattr(ctx.principal, "name", "") or ""
        turns = self._turns.setdefault(asyncio.get_running_loop(), {})
        turn = turns.get(user)
        if turn is None:
            turn = turns[user] = _Turn(asyncio.Semaphore(self._per_user))
        turn.requests += 1
        try:
            async with turn.running:
                return await self._run(action, body, ctx, render)
        finally:
            turn.requests -= 1
            if not turn.requests:
                del turns[user]

    async def _run(
        self, action: str, body: dict, ctx: RequestContext, render: Callable[[dict], Any] | None
    ) -> Any:
        mapping = self.mappings.get(action)
        if mapping is None:
            raise Ec2Error(
                "InvalidAction", f"The action {action} is not valid for this web service."
            )
        body = body or {}
        with _internal_errors(action):
            if mapping.refuse:  # before the source call is sent
                self._refuse(mapping, Runtime(self, mapping, body, ctx).scope())
            answered = await self._source_answer(mapping, body, ctx)

        def job() -> Any:
            return self.run_sync(mapping, body, ctx, render or strip_hidden, answered)

        static = (
            mapping.handler is None and mapping.source is not None and mapping.source.call is None
        )
        if static or answered is not None and answered.size <= INLINE_MAX:
            token = no_blocking.set(True)
            try:
                return self._guarded(action, job)
            except NeedsOned:
                pass  # something needs another oned call: all of it again, in a worker
            finally:
                no_blocking.reset(token)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._guarded, action, job)

    @staticmethod
    def _refuse(m: Mapping, scope: dict) -> None:
        """The mapping's `refuse:`: what the request alone asks wrongly (nothing is called)."""
        for refused, (code, message) in m.refuse:
            if refused(scope):
                raise Ec2Error(code, str(message(scope)) if message else code)

    @staticmethod
    def _guarded(action: str, job: Callable[[], Any]) -> Any:
        with _internal_errors(action):
            return job()

    async def _source_answer(self, m: Mapping, body: dict, ctx: RequestContext) -> Any:
        """The answer to the mapping's `source:` call, made on the event loop, when that is
        the first oned call its pipeline makes (and the client can); else None."""
        exchange = getattr(self.one, "exchange_async", None)
        src = m.source
        if exchange is None or m.handler is not None or src is None or src.call is None:
            return None
        if m.by_id is not None and m.by_id.call is not None and body.get(m.by_id.param):
            return None  # the ids are fetched one by one
        if m.paginate and m.paginate.not_with and body.get(m.paginate.not_with):
            return None  # the pipeline may refuse the combination before any call
        rt = Runtime(self, m, body, ctx)
        scope = rt.scope()
        args = tuple(src.call.args(scope))
        session = rt.admin_session() if src.call.admin else rt.session
        loop = asyncio.get_running_loop()
        slots = self._call_slots.get(loop)
        if slots is None:
            slots = self._call_slots[loop] = asyncio.Semaphore(self._max_calls)

        async def send(method: str, params: tuple) -> Any:
            async with slots:  # each call holds a slot: no more at once than worker threads
                return await exchange(method, params)

        prefetches = {}  # what the hooks will ask, sent meanwhile (not while an arg is None)
        for call in m.prefetch:
            call_args = tuple(call.args(scope))
            if None not in call_args:
                call_session = rt.admin_session() if call.admin else rt.session
                key = (call_session, call.method, call_args)
                prefetches[key] = loop.create_task(send(call.method, (call_session, *call_args)))
        try:
            data = await send(src.call.method, (session, *args))
        except BaseException as exc:
            for task in prefetches.values():
                task.cancel()  # no answer: the others are not waited for
            if isinstance(exc, OneUnavailable):
                raise Ec2Error(
                    "Unavailable", "OpenNebula is not reachable; try again later"
                ) from exc
            if isinstance(exc, OneError):
                return None  # refused before sending (an argument): the usual path says so
            raise
        answered = self.one.answered(src.call.method, args, data)
        if prefetches:
            got = await asyncio.gather(*prefetches.values(), return_exceptions=True)
            # a failure too is the answer: the hook's call raises it, not waiting for it again
            answered.prefetched.update(zip(prefetches, got, strict=True))
        return answered

    # -- the generic pipeline ------------------------------------------------------------------
    def run_sync(
        self,
        m: Mapping,
        body: dict,
        ctx: RequestContext,
        finish: Callable[[dict], Any] = strip_hidden,
        answered: Any = None,
    ) -> Any:
        """`finish(result)`: by default the result dict without hidden (`_`) and None members;
        `answered`: the answer to the source call, received already (see _source_answer)."""
        rt = Runtime(self, m, body, ctx, answered)
        if m.handler is not None:
            result = m.handler(rt) or {}
            if rt.dry_run:  # it changed nothing (or the client would have said so)
                raise dry_run_succeeded()
            return finish(result)
        scope = rt.scope()
        self._refuse(m, scope)
        requested = as_list(body.get(m.by_id.param)) if m.by_id else []
        page = m.paginate
        if (
            page
            and page.not_with
            and body.get(page.not_with)
            and body.get(page.max_results) is not None
        ):
            raise Ec2Error(
                "InvalidParameterCombination",
                f"The parameter {page.not_with} cannot be used with the parameter {page.max_results}",
            )
        if m.by_id and requested:
            items = self.fetch_by_ids(rt, m, requested, scope)
        elif m.source is not None:
            items = self._from_source(rt, m, scope)
        elif m.by_id:
            raise missing_parameter(m.by_id.param)
        else:
            items = []
        for hook in m.enrich:  # code that adds fields the filters need (edits items in place)
            hook(rt, items)
        if m.enrich and not (m.by_id and requested):
            for item in items:  # a pool's elements (_view_items): the document can go now
                item.pop("_element", None)
        for keep in m.match:
            items = keep(scope, items)
        if m.filters is not None:
            known = self.known_filters.get(m.action, frozenset())
            filters = compile_filters(body.get("Filter"), m.filters, known, self.id_prefixes)
            for predicate in filters:
                items = [i for i in items if predicate(i)]
        next_token = None
        if page:
            items, next_token = paginate(
                items, body.get(page.max_results), body.get(page.token), page.key, page.lo, page.hi
            )
        if rt.dry_run and not m.each:
            raise dry_run_succeeded()  # read only: every check passed
        changes = self._act(rt, m, items, scope) if m.each else []
        try:
            for hook in m.after:  # code for what the items need afterwards (edits them in place)
                hook(rt, items, changes)
            out = m.output({**scope, "items": items, "changes": changes, "next_token": next_token})
            return finish(out)
        except Ec2Error:
            raise
        except Exception as exc:
            if not any(change["made"] for change in changes):
                raise  # nothing changed: an InternalError, which SDKs may retry
            raise _answer_failed(m, exc) from exc

    def _view_items(self, rt: Runtime, m: Mapping, elements: list, scope: dict) -> list[dict]:
        if m.view is None:
            return [e if isinstance(e, dict) else {"_element": e} for e in elements]
        items = m.view.apply_all(elements, scope)
        if m.enrich:  # the hooks may read more than the view holds (dropped after them)
            for item, element in zip(items, elements, strict=True):
                item["_element"] = element
        return items

    def _from_source(self, rt: Runtime, m: Mapping, scope: dict) -> list[dict]:
        src = m.source
        if src.static is not None:
            items = list(src.static(scope) or [])
        else:
            answer = rt.run_call(src.call, scope, xml=True, pool=src.pool)
            roots = answer if isinstance(answer, list) else [rt.xml(answer)]
            elements = [e for root in roots for e in src.items(root)]
            items = self._view_items(rt, m, elements, scope)
        if m.where_all is not None:
            items = m.where_all(scope, items)
        return items

    def fetch_by_ids(self, rt: Runtime, m: Mapping, requested: list, scope: dict) -> list[dict]:
        """The mapping's by_id (also for handlers): every id parsed (…Malformed) and fetched
        (…NotFound), as views."""
        b = m.by_id
        if b.call is None:  # select from the source by a field
            wanted = [str(r) for r in requested]
            items = self._from_source(rt, m, scope)
            found = {str(i.get(b.field)) for i in items}
            missing = [r for r in wanted if r not in found]
            if missing:
                raise self._not_found(b, missing)
            return [i for i in items if str(i.get(b.field)) in wanted]
        # one entry a resource, however often and in which form it is named; ids beyond
        # oned's (EC2's own forms) are all absent, each by its text
        parsed: dict[Any, tuple[str, int]] = {}
        bad = []
        for raw in requested:
            number = parse_id(b.prefix, raw)
            if number is None:
                bad.append(str(raw))
            else:
                key = number if number <= MAX_ONE_ID else str(raw)
                parsed.setdefault(key, (str(raw), number))
        if bad:
            raise Ec2Error(
                b.malformed,
                f"Invalid id: '{', '.join(bad)}' (expecting '{b.prefix}-' and a number)",
            )
        items, missing = [], []
        for raw, number in parsed.values():
            item = self.fetch_one(rt, m, number, scope) if number <= MAX_ONE_ID else None
            if item is None:
                missing.append(raw)
            else:
                items.append(item)
        if missing:
            raise self._not_found(b, missing)
        return items

    def fetch_one(self, rt: Runtime, m: Mapping, number: int, scope: dict) -> dict | None:
        """by_id.call for one id → view, or None when absent, not visible or not matching `where`."""
        b = m.by_id
        id_scope = {**scope, "id": number}
        session = rt.admin_session() if b.call.admin else rt.session
        try:
            result = rt.one.call(session, b.call.method, *b.call.args(id_scope))
        except OneUnavailable as exc:
            raise Ec2Error("Unavailable", "OpenNebula is not reachable; try again later") from exc
        except OneError as exc:
            name = error_name(exc)
            if name in ("NO_EXISTS", "AUTHORIZATION") and name not in b.call.errors:
                return None  # absent, or another user's: both "does not exist" for this user
            raise map_error(exc, b.call.errors, id_scope, b.not_found, "") from exc
        root = rt.xml(result)
        found = b.item(root)
        if not found:
            return None
        item = m.view.apply(found[0], scope) if m.view else {"_id": number}
        if m.where is not None and not m.where({**scope, "item": item}):
            return None
        item["_element"] = found[0]  # for handlers that read more than the view holds
        return item

    @staticmethod
    def _not_found(b: Any, missing: list[str]) -> Ec2Error:
        plural = len(missing) > 1
        noun = b.noun + ("s" if plural and not b.noun.endswith("s") else "")
        verb = "do not exist" if plural else "does not exist"
        return Ec2Error(b.not_found, f"The {noun} '{', '.join(missing)}' {verb}")

    def _act(self, rt: Runtime, m: Mapping, items: list[dict], scope: dict) -> list[dict]:
        not_found = m.by_id.not_found if m.by_id else None
        if m.each.refuse:  # what oned (or EC2) would refuse: nothing done to any item
            for item in items:
                s = {**scope, "item": item, "id": item.get("_id")}
                for refused, error in m.each.refuse:
                    if not refused(s):
                        continue
                    if error is None:
                        refusal = OneError(ACTION, "not in this state", m.each.call.method)
                        raise map_error(refusal, m.each.call.errors, s, not_found, "")
                    code, message = error
                    raise Ec2Error(code, str(message(s)) if message else code)
        if rt.dry_run:
            raise dry_run_succeeded()  # every id and state checked; nothing is changed
        changes = []
        for item in items:
            number = item.get("_id")
            s = {**scope, "item": item, "id": number}
            made = m.each.skip is None or not m.each.skip(s)
            if made:
                rt.run_call(m.each.call, s, not_found)
                after = self.fetch_one(rt, m, number, scope) if m.each.refresh else item
            else:
                after = item
            changes.append({"item": item, "before": item, "after": after or item, "made": made})
        return changes
