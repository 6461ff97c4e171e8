"""The names of the flags a training run can raise, in a module that imports nothing.

A trend (`weightscope.commands.trend`) raises the first five over a run; a monitor
(`weightscope.commands.monitor`: `watch` and the trainer callbacks) raises alerts from
three of them and two of its own. They live here so that `watch --help` lists them
without loading numpy and the pipeline.
"""

FLAG_FALL_THEN_RISE = "fall-then-rise"
FLAG_JUMP = "jump"
FLAG_STUCK = "stuck-random-like"
FLAG_LOGIT_GROWTH = "logit-growth"
FLAG_ID_RISE = "id-rise"
FLAG_ALPHA_BAND = "alpha-band"
FLAG_RANK_COLLAPSE = "rank-collapse"
