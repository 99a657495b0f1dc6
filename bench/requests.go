package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ReadMessages reads protojson messages from files. A file holds one JSON
// object, a JSON array of objects, or one object per line (JSON Lines); the
// messages of all files are returned in order. newMsg makes an empty
// message of the wanted type.
func ReadMessages[M proto.Message](newMsg func() M, files ...string) ([]M, error) {
	var out []M
	for _, f := range files {
		docs, err := readJSONDocuments(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range docs {
			m := newMsg()
			if err := protojson.Unmarshal(doc, m); err != nil {
				return nil, fmt.Errorf("%s: message %d: %w", f, i+1, err)
			}
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no requests in %v", files)
	}
	return out, nil
}

// readJSONDocuments splits a file into its JSON objects: the whole file
// when it is one object, the elements when it is an array, else one per
// non-empty line.
func readJSONDocuments(path string) ([]json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var docs []json.RawMessage
		if err := json.Unmarshal(trimmed, &docs); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return docs, nil
	}
	if json.Valid(trimmed) {
		return []json.RawMessage{trimmed}, nil
	}
	var docs []json.RawMessage
	for n, line := range bytes.Split(trimmed, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return nil, fmt.Errorf("%s:%d: not a JSON object (want an object, an array or JSON Lines)", path, n+1)
		}
		docs = append(docs, line)
	}
	return docs, nil
}

// writeJSONLines writes messages as protojson, one per line: the format
// the scenario generators leave in their work directory.
func writeJSONLines[M proto.Message](path string, msgs []M) error {
	var buf bytes.Buffer
	for _, m := range msgs {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		// protojson's output may contain newlines in a future version;
		// compact it so one message stays one line.
		if err := json.Compact(&buf, b); err != nil {
			return err
		}
		buf.WriteByte('\n')
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
