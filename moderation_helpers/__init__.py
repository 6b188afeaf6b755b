"""moderation-cookbook helpers: the logic behind the notebooks.

Parts, imports pointing down only (CONTRIBUTING.md draws them): ``cli`` → ``pages`` → ``recipe``
→ ``factory`` / ``corpus`` → ``export`` → ``classifier`` → ``model`` → ``core``. The notebooks
call ``recipe`` and reach the local Classifier Factory (``factory``) only over HTTP, through the
SDK, exactly as they reach the Mistral API.
"""

__version__ = "0.1.0"
