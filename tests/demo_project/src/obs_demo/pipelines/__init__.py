"""The demo's pipelines, one package each, found by find_pipelines() as in a `kedro new` project."""
