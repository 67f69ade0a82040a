"""Cache warming from OpenAI batch files: parsing and tallying lines (`batch_file`) and
sending them through the gateway (`runner`), for `genai-api warm` and `CACHE_WARM_FILE`."""
