"""The steps of a decision, one module each; pipeline.decide lists them in order.

A step is a plain function of the check's Context (pipeline.context): it returns a Decision to
end the check - a denial, or the allow at the end - or None to pass it on, and it reports what
it saw to `ctx.trace` (a no-op on real checks). It reads what earlier steps left in the Context
and leaves there what later ones need. A step that has to wait returns an awaitable instead;
the rest stay synchronous, so a check pays for no coroutine it does not need.

A finisher (`mode`) runs after a step has decided, on every decision, and may replace it.
"""
