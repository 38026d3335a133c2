package main

import (
	_ "github.com/jackc/pglogrepl"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/klauspost/compress/s2"
	_ "github.com/pierrec/lz4/v4"
	_ "gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/azureblob"
	_ "github.com/urfave/cli/v2"
	_ "github.com/rs/zerolog"
	_ "github.com/ulikunitz/xz"
	_ "github.com/golang/snappy"
	_ "golang.org/x/crypto/blake2s"
	_ "golang.org/x/sync/errgroup"
	_ "github.com/google/go-cmp/cmp"
)
func main() {}
