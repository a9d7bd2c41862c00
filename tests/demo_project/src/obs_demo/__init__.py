"""Test project: a namespaced pipeline reading a versioned dataset."""
