"""The wire contract of ``GET /v1/fine_tuning/models/{id}/folder`` (a local extension of the
factory's API), shared by the route (``factory.api.routes.model_folder``) and its client
(``recipe.deploy.fetch_model_folder``): the exported model folder as one flat tar.gz archive,
with its SHA-256 in a header."""

FOLDER_PATH = "/v1/fine_tuning/models/{model_id}/folder"
ARCHIVE_SHA256_HEADER = "X-Archive-SHA256"
