"""Analysis: what turns a checkpoint reader and a plan into results.

`spectra` gives one layer's eigenvalues under the precision policy (cache first),
`pipeline` streams every layer of a checkpoint through the spectrum, the fit and the
checks into a `Report`, and `model_measures` runs the second pass of measures that need
more than one matrix at a time (attention-logit bounds, embedding row clouds).
"""
