"""The privacy job: a video in, the same video with every face hidden out."""
