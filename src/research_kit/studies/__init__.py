"""Study pipelines: pipeline files, their dependency graph, and (to come) their runner."""
