"""A small agent on the official `openai` client, run under aios with `run ext -- python examples/openai_agent.py`.

Under aios, `OPENAI_BASE_URL` and `OPENAI_API_KEY` point at the kernel's HTTP front, so its calls are those of its
aios process. It streams each answer.
"""

import os
import sys

import openai

QUESTIONS = sys.argv[1:] or ["Name three colours.", "Name three animals.", "Name three rivers."]


def main() -> int:
    client = openai.OpenAI()  # OPENAI_BASE_URL, OPENAI_API_KEY
    model = os.environ.get("AIOS_MODEL") or client.models.list().data[0].id
    for question in QUESTIONS:
        print(f"> {question}", flush=True)
        try:
            stream = client.chat.completions.create(model=model, stream=True, max_tokens=64,
                                                    messages=[{"role": "user", "content": question}])
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
        except openai.APIError as exc:
            print(f"\nopenai_agent: the model call failed: {exc.message}", flush=True)
            return 1
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
