"""Embeddings, input by input: keys and flights per input (`runner`), upstream calls in
provider-sized chunks (`upstream`), and the compact stored vectors (`vectors`)."""
