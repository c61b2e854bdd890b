"""The ENG5 runner: dev-environment anchors, generated essays, a mock LLM judge, and the
`cj-health eng5 reset|register-anchors|execute` workflow that creates real CJ batches through
`python_fix`."""
