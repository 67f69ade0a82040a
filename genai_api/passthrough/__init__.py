"""The pass-through: every `/v1/*` route the gateway does not answer itself (moderations,
images, audio, files, uploads, batches, vector stores, fine-tuning, assistants...) relayed
to the default upstream with the gateway's key, uncached, bodies streamed both ways, under
the tenancy rule of `genai_api.tenancy`.
"""

from genai_api.passthrough.handler import Passthrough
from genai_api.passthrough.upstream import Upstream

__all__ = ["Passthrough", "Upstream"]
