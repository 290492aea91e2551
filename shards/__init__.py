"""Raw datasets in, WebDataset shards out: annotation readers, decoding, motion maps."""
