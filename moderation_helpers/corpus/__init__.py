"""moderate-corpus: a model folder scores a corpus of comments on Ray Data."""
