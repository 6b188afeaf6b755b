"""The reader's side: lesson pages from executed notebooks, figures, notebook widgets."""
