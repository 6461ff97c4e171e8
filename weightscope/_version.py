"""The package version and distribution name, in a leaf module so that no module imports
the package to learn them."""

__version__ = "0.1.0"

#: The name on the package index (``pip install weightscope-esd``). The import package and
#: the command stay ``weightscope``; the index's ``weightscope`` is another project.
DISTRIBUTION = "weightscope-esd"
