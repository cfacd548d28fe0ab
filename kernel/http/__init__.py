"""aios as a model server: the Ollama and OpenAI APIs over HTTP on 127.0.0.1 (`front`), and outside programs
as processes (`external`)."""
