"""The reader's side: lesson pages rendered from executed notebooks, figures and notebook widgets."""
