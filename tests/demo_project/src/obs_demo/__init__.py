"""Test project: two pipelines, found by find_pipelines(), reading a versioned dataset."""
