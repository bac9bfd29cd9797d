// SubspaceData: Tokenizers (byte-level BPE, Hugging Face `tokenizer.json`), corpora and their split, token files, batches and the content-keyed cache.
//
// May depend on: SubspaceCore, SubspaceModels (for `TokenBatch`). Nothing here may import a layer listed after it in Package.swift.
