"""The attempt loop of one call, shared by the tool actor and FunctionToolExecutor.

One loop: the retry policy drives the attempts (the first included); each attempt
passes the circuit breaker's public ``execute_with_breaker``, which admits it (or
refuses it with ``CircuitOpenError``), runs the tool under the spec's per-attempt
``timeout_s`` (``ToolTimeoutError`` past it, retryable) and records its outcome. The
tool runs in exactly one place, ``_Attempts.once`` (inside the spec's chaos strategies,
if any: an injected fault is that attempt's failure). The loop ends the call:

* the tool returned: ``succeed``;
* no attempt ran (the breaker refused the first): ``reject`` with ``CircuitOpenError``;
* the tool ran and failed: ``fail`` with the tool's own last exception, never wrapped,
  also when that failure opened the breaker or the breaker refused a retry (a note on
  the exception says so), so ``except PaymentDeclined:`` catches every call that reached
  the service;
* the spec's retry budget refused a retry: ``fail`` with the tool's own last exception
  (a note says so; ``ToolStats.budget_exhausted`` counts it). Each call deposits in the
  budget before its first attempt; each retry withdraws, in ``on_retry``, before its wait;
* a ``BaseException`` from the tool that is not a cancellation (``SystemExit``, an
  ``asyncio.CancelledError`` leaked by a client library...): ``fail`` with
  ``ActorCrashedError`` caused by it; it stays inside this call.

With ``spec.hedging``, each attempt of the retry loop is a *race* (``ToolRunner._race``):
up to ``1 + max_hedged_attempts`` attempts of the tool, started as the policy's
:class:`~toolvisor.policies.hedging.HedgeSchedule` says, each through
``execute_with_breaker`` and under its own ``timeout_s`` scope. The first that returns is
the race's value and the others are cancelled (a cancellation: the breaker abandons them,
they are not failures, and the call's outcome is the winner's, known). A race that every
attempt lost fails with one of their errors: an ``IdempotencyOutcomeUnknownError`` if an
attempt's outcome is unknown, else a ``CircuitOpenError`` if the breaker refused or
opened (the loop then ends as above), else the latest failure; the retry policy decides
on it as on any attempt's. ``retries`` counts the first attempt of every race after the
first; ``hedged`` counts the others that ran. The observer sees a race as one attempt.

Cancellation (``trio.Cancelled``) and ``KeyboardInterrupt`` are never counted nor retried:
they propagate, and whoever cancelled ends the call.
"""

from __future__ import annotations

import functools
import inspect
import math
import weakref
from collections.abc import Awaitable, Callable, Mapping
from types import CoroutineType
from typing import Any, Protocol

import outcome
import trio

from .._chaos import run_with_chaos
from ..errors import (
    ActorCrashedError,
    CircuitOpenError,
    IdempotencyOutcomeUnknownError,
    ToolTimeoutError,
)
from ..events import BreakerTransition, BudgetExhausted, Event, HedgeLaunched, RetryScheduled
from ..policies.hedging import HedgingPolicy
from ..policies.retry import ExponentialBackoffRetryPolicy, FixedRetryPolicy, NoRetryPolicy
from ..spec import CompiledSpec, ExecutionContext
from .call import Call, raise_alone
from .observer import ATTEMPT_CONTEXT, AttemptContext, CallObserver
from .stats import Counters

__all__ = [
    "Invoker",
    "ToolRunner",
    "Watchdog",
    "ends_after_cleanup",
    "is_cancellation",
    "make_invoker",
    "state_name",
]

Invoker = Callable[[Mapping[str, Any], ExecutionContext], Awaitable[Any]]
Publish = Callable[[Event], None]


def state_name(state: object) -> str:
    """``"closed"`` for ``CircuitState.CLOSED`` or a user policy's plain ``"closed"``."""
    if isinstance(state, str):
        # A plain str, or a str enum such as CircuitState: its own characters, as a
        # plain str (an enum's ``value`` property costs two calls, on every call while
        # events are subscribed).
        return str.__str__(state)
    value = getattr(state, "value", state)
    return value if isinstance(value, str) else str(value)


def make_invoker(fn: Callable[..., Any], tool_name: str) -> Invoker:
    """Adapt ``async def fn(args)`` or ``async def fn(args, ctx)`` to one calling shape.

    Raises:
        TypeError: ``fn`` is not an async function (naming the tool and what to do).
    """
    if not callable(fn):
        raise TypeError(f"tool {tool_name!r}: the tool function must be callable, got {fn!r}")
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects count too
    )
    if not is_async:
        raise TypeError(
            f"tool {tool_name!r}: {fn!r} is not an async function; define it with "
            "`async def fn(args)` or `async def fn(args, ctx)`"
        )
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    takes_ctx = len(params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
    if not params:
        raise TypeError(
            f"tool {tool_name!r}: {fn!r} takes no arguments; it must accept `args` "
            "(and optionally `ctx`)"
        )

    # The coroutine check inline (it is every call's), the rest in _awaitable().
    invoke: Invoker
    if takes_ctx:

        def invoke(args: Mapping[str, Any], ctx: ExecutionContext) -> Awaitable[Any]:
            result = fn(args, ctx)
            return result if type(result) is CoroutineType else _awaitable(result, tool_name)

    else:

        def invoke(args: Mapping[str, Any], ctx: ExecutionContext) -> Awaitable[Any]:
            result = fn(args)
            return result if type(result) is CoroutineType else _awaitable(result, tool_name)

    _TAKES_CTX[invoke] = takes_ctx
    try:
        cleanup_first = fn in _CLEANUP_FIRST
    except TypeError:  # an unhashable callable object: never marked
        cleanup_first = False
    if cleanup_first:
        _CLEANUP_FIRST.add(invoke)
    return invoke


# Whether an invoker's tool takes ``ctx`` (a weak map: invokers live as long as tools).
_TAKES_CTX: weakref.WeakKeyDictionary[Invoker, bool] = weakref.WeakKeyDictionary()

# Tool functions (and their invokers) whose cut attempt ends only once their own cleanup
# did (toolvisor.aio's asyncio tools): their caller is answered after it, never before.
_CLEANUP_FIRST: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


#: The built-in retry policies, whose ``max_attempts`` alone decides that a first attempt's
#: failure ends the call (their own ``execute``: no user code decides it). Exact types: a
#: subclass may override ``execute``.
_GIVES_UP_BY_COUNT = frozenset({NoRetryPolicy, FixedRetryPolicy, ExponentialBackoffRetryPolicy})


def ends_after_cleanup(fn: Callable[..., Any]) -> None:
    """Mark the tool function ``fn``: a cut attempt of it answers its caller only once the
    attempt's own cleanup ended (the watchdog never answers for it)."""
    _CLEANUP_FIRST.add(fn)


def takes_context(invoke: Invoker) -> bool:
    """Whether the tool behind ``invoke`` (from :func:`make_invoker`) takes ``ctx``."""
    return _TAKES_CTX.get(invoke, True)


def _awaitable(result: object, tool_name: str) -> Awaitable[Any]:
    if inspect.isawaitable(result):
        return result
    raise TypeError(
        f"tool {tool_name!r} returned {type(result).__name__}, not an awaitable; "
        "the tool function must be `async def`"
    )


class Watchdog(Protocol):
    """How an actor's worker keeps a call's time without a cancel scope per attempt."""

    #: Set by the runner for the first attempt: a cut at ``timeout_s`` can only end the
    #: call (its retry policy never retries), so the watchdog answers the caller itself.
    answers: bool
    #: The error the watchdog answered the call with at the timeout (None: not answered).
    answered: Exception | None

    def watch(self, deadline: float) -> None:
        """From now on, cut the worker's scope at ``deadline`` (trio time)."""

    def in_order(self) -> Awaitable[None] | None:
        """What to await until the breaker recorded every other attempt of the tool that
        the watchdog answered before now (their cuts are made first); None: nothing."""


class ToolRunner:
    """Runs calls of one tool through its policies.

    The runner belongs to one actor incarnation (or executor); only its tasks touch the
    breaker state of its tool.
    """

    __slots__ = (
        "_cleanup_first",
        "_last_state",
        "counters",
        "invoke",
        "observer",
        "publish",
        "spec",
        "takes_ctx",
    )

    def __init__(
        self,
        spec: CompiledSpec,
        invoke: Invoker,
        counters: Counters,
        publish: Publish | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.spec = spec
        self.invoke = invoke
        self.counters = counters
        self.publish = publish
        self.observer = observer
        self.takes_ctx = takes_context(invoke)
        self._last_state = state_name(spec.breaker.get_state(spec.tool_name))
        # An invoker is marked when it is made (make_invoker), before any runner has it.
        self._cleanup_first = invoke in _CLEANUP_FIRST

    async def run(
        self,
        call: Call,
        watchdog: Watchdog | None = None,
        replay: Exception | None = None,
    ) -> None:
        """Run ``call``'s attempts and end it (see the module docstring).

        Args:
            call: the call, started.
            watchdog: the actor's worker keeping time for the first attempt: its deadline
                (``min(now + timeout_s, call.deadline)``) is written down already, and it
                cuts the worker's scope when it passes. Later attempts run under their own
                ``timeout_s`` scope. None (the executor): every attempt has its own scope.
                A hedged call's attempts run side by side in the worker's scope, so each
                has its own scope and the watchdog keeps only the call's deadline.
            replay: the first attempt ran already and was cut at its ``timeout_s`` by the
                watchdog: the loop starts again with this failure as attempt 1's outcome,
                so the breaker records it and the retry policy decides.

        Raises:
            trio.Cancelled: the caller or a deadline cut the call; it is not ended here.
        """
        spec = self.spec
        observer = self.observer
        budget = spec.retry_budget
        if watchdog is not None:
            if spec.hedging is not None:
                watchdog.watch(call.deadline)  # no cut at timeout_s: it would cut every attempt
                watchdog = None
            elif replay is None:
                watchdog.answers = self.cut_is_final(spec)
        if budget is not None and replay is None:  # a replay goes on with the same call
            budget.deposit(trio.current_time())
        if observer is not None:
            observer.call_running(call)
        if self.publish is not None:
            self._observe_breaker()
        attempts = _Attempts(self, spec, call, watchdog, replay)
        try:
            value = await spec.retry_policy.execute(
                attempts, deadline=call.deadline, on_retry=attempts.on_retry
            )
        except Exception as exc:
            call.in_attempt = False
            if type(exc) is _RetryRefused:
                exc = self._budget_exhausted(call, exc.error)
            if observer is not None:
                observer.attempt_ended(call, exc, None)
            if self.publish is not None:
                self._observe_breaker()
            self._failed(call, exc)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if is_cancellation(exc):
                raise
            if observer is not None:
                observer.attempt_ended(call, exc, None)
            call.fail(ActorCrashedError(spec.tool_name, exc))
        else:
            call.in_attempt = False
            if observer is not None:
                observer.attempt_ended(call, None, None)
            if self.publish is not None:
                self._observe_breaker()
            call.succeed(value)
        finally:
            # The tool's errors keep in their tracebacks the frames of this loop (this
            # one, the retry policy's, the breaker's), and the call keeps its errors
            # (its outcome, last_error): those frames must not keep the call, or each
            # failed call leaves a reference cycle that only the garbage collector frees.
            attempts.call = None  # type: ignore[assignment]
            del call, replay

    def cut_is_final(self, spec: CompiledSpec) -> bool:
        """Whether a first attempt of ``spec`` cut at ``timeout_s`` ends its call.

        True when the spec's retry policy is a built-in one with ``max_attempts=1`` (it
        gives up after the first attempt, whatever the error: decided without running
        any user code) and the tool's attempts end as soon as trio cancels them (not an
        asyncio tool, whose cut attempt ends once its task's cleanup did).
        ``max_attempts`` is read each time: a policy object may be changed in place.
        """
        policy = spec.retry_policy
        return (
            type(policy) in _GIVES_UP_BY_COUNT
            and policy.max_attempts == 1  # type: ignore[attr-defined]
            and not self._cleanup_first
        )

    def context(self, call: Call) -> ExecutionContext:
        """The ``ctx`` a tool that takes one sees in this attempt: the caller's, with the
        call's idempotency key and the attempt number."""
        ctx = call.ctx
        return ExecutionContext(
            tenant_id=ctx.tenant_id,
            request_id=ctx.request_id,
            metadata=ctx.metadata,
            idempotency_key=call.key,
            attempt=call.attempts,
            delivery=ctx.delivery,
        )

    def attempt_timed_out(self, call: Call) -> Exception:
        """The outcome of an attempt cut at ``timeout_s``: a retryable ToolTimeoutError,
        or, for an idempotent call that must not risk a second effect
        (``on_unknown_outcome="fail"``), IdempotencyOutcomeUnknownError caused by it."""
        self.counters.timeouts += 1
        spec = self.spec
        timed_out = ToolTimeoutError(spec.tool_name, spec.timeout_s)
        if call.key is None or spec.on_unknown_outcome != "fail":
            return timed_out
        unknown = IdempotencyOutcomeUnknownError(call.key, tool=spec.tool_name)
        unknown.__cause__ = timed_out
        return unknown

    async def _timed(self, call: Call) -> Any:
        """One attempt under its own ``timeout_s`` scope."""
        # The attempt's error keeps this frame in its traceback: on the way out the frame
        # lets go of the call and of the error (a reference cycle otherwise, see run).
        try:
            with trio.move_on_after(self.spec.timeout_s):
                if self.spec.chaos:
                    return await self._chaotic(call)
                return await self.invoke(
                    call.args, self.context(call) if self.takes_ctx else call.ctx
                )
        except BaseException:
            del call
            raise
        box: list[BaseException] = [self.attempt_timed_out(call)]
        del call
        return raise_alone(box)

    async def _race(
        self,
        call: Call,
        hedging: HedgingPolicy,
        first: Callable[[], Awaitable[Any]],
        observer: CallObserver | None,
    ) -> Any:
        """One attempt of the loop, hedged: race ``first`` and then hedged attempts (each
        through the breaker) as ``hedging`` schedules them; the winner's value, or the
        error of a lost race (see the module docstring). ``observer`` (the call's) sees
        the race as one attempt, and each hedged attempt's tool runs inside its
        ``attempt_context``, as the first's does."""
        schedule = hedging.schedule(trio.current_time())
        hedge = functools.partial(self._hedge, call, observer)
        send, receive = trio.open_memory_channel[outcome.Outcome[Any]](math.inf)
        scopes: list[trio.CancelScope] = []
        errors: list[Exception] = []
        result: outcome.Outcome[Any] | None = None
        error: BaseException | None = None
        run: Callable[[], Awaitable[Any]] = first
        lost: BaseException
        try:
            async with trio.open_nursery() as nursery:
                try:
                    while True:
                        now = trio.current_time()
                        while schedule.next_at() <= now:
                            scope = trio.CancelScope()
                            scopes.append(scope)
                            run = first if schedule.launch(now) == 0 else hedge
                            # Returns once the attempt began (or was refused): attempts
                            # get their numbers in the order they were launched.
                            await nursery.start(self._contend, scope, run, send)
                        if schedule.over:
                            break
                        with trio.move_on_at(schedule.next_at()):
                            result = await receive.receive()
                            if not isinstance(result, outcome.Error):
                                return result.unwrap()  # the others are cancelled (finally)
                            error = result.error
                            if not isinstance(error, Exception):
                                raise error  # from the tool: it ends the call (crash)
                            errors.append(error)
                            schedule.failed(error)
                            if not isinstance(error, CircuitOpenError):
                                call.last_error = error
                            elif isinstance(error.__cause__, Exception):
                                call.last_error = error.__cause__  # its failure opened it
                            if not schedule.running:
                                call.in_attempt = False
                finally:
                    for scope in scopes:
                        scope.cancel()
        except BaseExceptionGroup as group:
            lost = _one_of(group)
            lost.__cause__ = None  # raised "from None", as the race's own
        else:
            lost = _race_lost(errors)
        finally:
            receive.close()  # drops the outcomes no one took
        # The lost race's error keeps this frame (and the attempts') in its traceback:
        # they let go of the call, which keeps that error (a cycle otherwise, see run).
        box: list[BaseException] = [lost]
        del lost, errors, result, error, call, hedge, run
        return raise_alone(box)

    def _hedge(self, call: Call, observer: CallObserver | None) -> Awaitable[Any]:
        """A hedged attempt of ``call``'s race (not its first), under its own scope."""
        n = call.attempts = call.attempts + 1
        call.in_attempt = True
        self.counters.hedged += 1
        if self.publish is not None:
            self.publish(HedgeLaunched(tool=call.tool, attempt=n, at=trio.current_time()))
        attempt = self._timed(call)
        return attempt if observer is None else _observed(observer, call, attempt)

    async def _contend(
        self,
        scope: trio.CancelScope,
        run: Callable[[], Awaitable[Any]],
        send: trio.MemorySendChannel[outcome.Outcome[Any]],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """One attempt of a race, in its own task; its outcome goes to the race.

        Started (``task_status``) as soon as the breaker let the attempt begin, or
        refused it.
        """
        begin = _Begin(run, task_status)
        result: outcome.Outcome[Any]
        with scope:
            try:
                value = await self.spec.breaker.execute_with_breaker(begin, self.spec.tool_name)
            except (trio.Cancelled, KeyboardInterrupt):
                raise  # a loser (its scope), or the whole race cut
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                result = outcome.Error(exc)
            else:
                result = outcome.Value(value)
            if not begin.began:
                task_status.started()  # refused, or answered without running the tool
            send.send_nowait(result)
            # An error's traceback keeps this frame and the breaker's (whose ``func`` is
            # ``begin``): they keep neither the outcome nor the attempt, whose call
            # keeps the error (a cycle otherwise, see run).
            begin.run = None
            del result, begin, run

    def _chaotic(self, call: Call) -> Awaitable[Any]:
        """One attempt inside the spec's chaos strategies (an injected fault is its failure)."""

        def tool() -> Awaitable[Any]:
            return self.invoke(call.args, self.context(call) if self.takes_ctx else call.ctx)

        return run_with_chaos(self.spec.chaos, tool)

    def _failed(self, call: Call, exc: Exception) -> None:
        """End ``call`` after its loop raised ``exc`` (see the module docstring)."""
        if call.done:
            return  # answered already (the watchdog, at the attempt's timeout): no notes
        attempts = call.attempts
        if isinstance(exc, CircuitOpenError):
            if not attempts:
                call.reject(exc)
                return
            # The tool ran: its own last failure is the call's, whether it opened the
            # breaker (the CircuitOpenError's cause) or another call did before a retry.
            cause = exc.__cause__
            tool_error = cause if isinstance(cause, Exception) else call.last_error
            if tool_error is not None:
                tool_error.add_note(
                    f"toolvisor: the circuit breaker of tool {call.tool!r} opened; "
                    "the remaining attempts were skipped"
                )
                exc = tool_error
        if attempts > 1:
            exc.add_note(f"toolvisor: tool {call.tool!r} failed after {attempts} attempts")
        call.fail(exc)

    def _budget_exhausted(self, call: Call, error: Exception) -> Exception:
        """The retry budget refused a retry after ``error``: it is the call's end."""
        self.counters.budget_exhausted += 1
        if self.publish is not None:
            self.publish(BudgetExhausted(tool=call.tool, at=trio.current_time()))
        error.add_note(
            f"toolvisor: the retry budget of tool {call.tool!r} is exhausted; the retry was skipped"
        )
        return error

    def _on_retry(self, attempt: int, delay: float, exc: BaseException) -> None:
        if self.publish is not None:
            self._observe_breaker()
            self.publish(
                RetryScheduled(
                    tool=self.spec.tool_name,
                    attempt=attempt,
                    delay=delay,
                    error=repr(exc),
                    at=trio.current_time(),
                    error_type=type(exc).__name__,
                )
            )

    def _observe_breaker(self) -> None:
        state = state_name(self.spec.breaker.get_state(self.spec.tool_name))
        if state != self._last_state and self.publish is not None:
            old, self._last_state = self._last_state, state
            self.publish(
                BreakerTransition(
                    tool=self.spec.tool_name, old=old, new=state, at=trio.current_time()
                )
            )
        self._last_state = state


class _Attempts:
    """The attempt loop's callbacks for one call, as one object.

    Calling it starts the next attempt (the retry policy's ``func``); :meth:`once` is the
    attempt itself (what the breaker runs), :meth:`on_retry` the retry policy's hook. One
    slotted object per call instead of three closures and the cells they share (about
    eighteen objects the collector tracks for as long as the call is in flight). It keeps
    the spec and the observer the call started with, as the loop did: a ``reconfigure``
    or an ``observe`` during the call applies to the calls made after it.
    """

    __slots__ = ("call", "observer", "replay", "runner", "spec", "watchdog")

    def __init__(
        self,
        runner: ToolRunner,
        spec: CompiledSpec,
        call: Call,
        watchdog: Watchdog | None,
        replay: Exception | None,
    ) -> None:
        self.runner = runner
        self.spec = spec
        self.call = call
        self.watchdog = watchdog
        self.replay = replay
        self.observer = runner.observer

    def __call__(self) -> Awaitable[Any]:
        spec = self.spec
        replay = self.replay
        if replay is not None:
            self.replay = None
            self.call.last_error = replay  # the tool's, even if the breaker now refuses it
            return spec.breaker.execute_with_breaker(_raiser(replay), spec.tool_name)
        hedging = spec.hedging
        if hedging is not None:
            return self.runner._race(self.call, hedging, self.once, self.observer)
        return spec.breaker.execute_with_breaker(self.once, spec.tool_name)

    def once(self) -> Awaitable[Any]:
        call = self.call
        runner = self.runner
        n = call.attempts = call.attempts + 1
        call.in_attempt = True
        if n > 1:
            runner.counters.retries += 1
        observer = self.observer
        if observer is not None:
            observer.attempt_started(call)
        watchdog = self.watchdog
        if n == 1 and watchdog is not None:  # the watchdog keeps its time
            if self.spec.chaos:
                attempt = runner._chaotic(call)
            else:
                attempt = runner.invoke(
                    call.args, runner.context(call) if runner.takes_ctx else call.ctx
                )
            if watchdog.answers:
                attempt = _answerable(watchdog, attempt)
        else:
            attempt = runner._timed(call)
        return attempt if observer is None else _observed(observer, call, attempt)

    def on_retry(self, failed: int, delay: float, exc: BaseException) -> None:
        call = self.call
        call.in_attempt = False
        if isinstance(exc, Exception):
            call.last_error = exc
            budget = self.spec.retry_budget
            if budget is not None and not budget.try_withdraw(trio.current_time()):
                raise _RetryRefused(exc)  # ends the loop: no retry is scheduled
        watchdog = self.watchdog
        if watchdog is not None:
            watchdog.watch(call.deadline)  # the retries run on the call's deadline
        observer = self.observer
        if observer is not None:
            observer.attempt_ended(call, exc, delay)
        self.runner._on_retry(failed, delay, exc)


class _Begin:
    """A race's attempt as its breaker runs it: it says it began once the tool started."""

    __slots__ = ("began", "run", "task_status")

    def __init__(
        self, run: Callable[[], Awaitable[Any]], task_status: trio.TaskStatus[None]
    ) -> None:
        self.run: Callable[[], Awaitable[Any]] | None = run
        self.task_status = task_status
        self.began = False

    def __call__(self) -> Awaitable[Any]:
        run = self.run
        assert run is not None, "a race's attempt runs once"
        attempt = run()
        self.began = True
        self.task_status.started()
        return attempt


class _RetryRefused(Exception):  # noqa: N818 - a signal inside the loop, never raised out
    """Raised by ``on_retry`` to veto a retry; carries the attempt's own error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


async def _answerable(watchdog: Watchdog, attempt: Awaitable[Any]) -> Any:
    """A first attempt the watchdog answers if it runs out of ``timeout_s``, whose cut
    waits for the sweeper: what its breaker records is what a cut at the deadline would.

    The tool's own end (its value or its error) goes to the breaker only after every
    other attempt of the tool answered before it was recorded: a success must not come
    before the timeout that preceded it. And once the watchdog answered this attempt, its
    outcome is that timeout, whatever the tool did after (its caller has the timeout).
    """
    try:
        value = await attempt
    except BaseException as exc:
        if isinstance(exc, trio.Cancelled | KeyboardInterrupt) or is_cancellation(exc):
            raise
        del exc
        wait = watchdog.in_order()
        if wait is not None:
            await wait
        if watchdog.answered is None:
            raise
        value = None  # the tool's late error is dropped: the timeout stands
    else:
        wait = watchdog.in_order()
        if wait is not None:
            await wait
    answered = watchdog.answered
    if answered is None:
        return value
    # Raised outside the handler above: the timeout (its caller's error) gets no context.
    box: list[BaseException] = [answered]
    del answered, value, watchdog
    return raise_alone(box)


def _observed(observer: CallObserver, call: Call, attempt: Awaitable[Any]) -> Awaitable[Any]:
    """``attempt``, to be awaited inside the observer's ``attempt_context`` if it has one.

    The context manager is entered by the coroutine that awaits the tool, so in the task
    that runs it, and exited there when the tool ends: a contextvar it sets (the current
    span) holds for the tool's code alone and is reset in the context that set it.
    """
    # An observer written before the hook existed has none: nothing to enter.
    attempt_context = getattr(observer, "attempt_context", None)
    enter = None if attempt_context is None else attempt_context(call)
    if enter is None:
        return attempt
    return _inside(enter, attempt)


async def _inside(enter: AttemptContext, attempt: Awaitable[Any]) -> Any:
    token = ATTEMPT_CONTEXT.set(enter)  # for an asyncio tool's task (see ATTEMPT_CONTEXT)
    try:
        with enter():
            return await attempt
    finally:
        ATTEMPT_CONTEXT.reset(token)


def _raiser(error: Exception) -> Callable[[], Awaitable[Any]]:
    """An attempt that ends at once with ``error`` (an outcome that already happened).

    It runs once: a breaker runs its ``func`` at most once per attempt.
    """
    box: list[BaseException] = [error]
    return functools.partial(_raise, box)


async def _raise(box: list[BaseException]) -> Any:
    # Boxed so that this frame, which the error's traceback keeps, does not keep the
    # error (a closure over it would: a cycle).
    raise_alone(box)


def _race_lost(errors: list[Exception]) -> Exception:
    """The error of a race every attempt of which failed (``errors``, in order)."""
    for error in errors:
        if isinstance(error, IdempotencyOutcomeUnknownError):
            return error  # an attempt may have had its effect: the call's outcome is unknown
    for error in reversed(errors):
        if isinstance(error, CircuitOpenError):
            return error  # the breaker refused or opened: no retry either
    return errors[-1]


def _one_of(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a race's nursery raised, out of its group: the tool's BaseException (a crash)
    or a Ctrl-C if there is one, else the cancellation of the whole race."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    for exc in leaves:
        if not isinstance(exc, trio.Cancelled):
            return exc
    return leaves[0]


def is_cancellation(exc: BaseException) -> bool:
    """True for trio's cancellation or a Ctrl-C, also inside exception groups."""
    if isinstance(exc, trio.Cancelled | KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(is_cancellation(e) for e in exc.exceptions)
    return False
