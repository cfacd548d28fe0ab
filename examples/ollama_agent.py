"""A small agent on the official `ollama` client, run under aios with `run ext -- python examples/ollama_agent.py`.

It asks the model a few questions, one after another, streaming each answer. Under aios, `OLLAMA_HOST` points at
the kernel's HTTP front, so its calls are those of its aios process (`ps`, `sched`, `kill -STOP`, `kill`).
"""

import os
import sys

import ollama

QUESTIONS = sys.argv[1:] or ["Name three colours.", "Name three animals.", "Name three rivers.",
                             "Name three mountains.", "Name three cities."]


def main() -> int:
    client = ollama.Client()  # OLLAMA_HOST
    model = os.environ.get("AIOS_MODEL") or client.list().models[0].model
    for question in QUESTIONS:
        print(f"> {question}", flush=True)
        try:
            for part in client.chat(model=model, messages=[{"role": "user", "content": question}], stream=True,
                                    options={"num_predict": 64}):
                print(part.message.content, end="", flush=True)
        except ollama.ResponseError as exc:
            print(f"\nollama_agent: the model call failed: {exc.error}", flush=True)
            return 1
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
