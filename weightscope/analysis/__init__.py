"""Analysis: what turns a checkpoint reader and a plan into results.

`spectra` gives one layer's eigenvalues under the precision policy (cache first),
`pipeline` streams every layer of a checkpoint through the spectrum, the fit and the
checks into a `Report`, and `model_measures` takes from the same stream what the measures
that need more than one layer's numbers read (attention-logit bounds, embedding row
clouds), so that no matrix is read twice.
"""
