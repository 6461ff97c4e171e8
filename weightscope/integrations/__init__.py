"""Trainer callbacks: weightscope inside a training loop.

`weightscope.integrations.transformers.WeightscopeCallback` (needs the ``transformers``
extra) and `weightscope.integrations.lightning.WeightscopeCallback` (the ``lightning``
extra). Importing this package imports neither trainer.
"""
