"""The recipe's steps as the notebooks call them: prepare, jobs, infer, deploy, the run folder and
the pipeline that runs the five notebooks. Talks to a factory through the SDK only."""
