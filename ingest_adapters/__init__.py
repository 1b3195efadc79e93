"""Framework autolog hooks (`autolog`, `autolog_<framework>`, `torch`) and importers of
foreign records; they use only the public SDK (`modeldb`)."""
