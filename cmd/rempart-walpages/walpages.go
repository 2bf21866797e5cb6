package main

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"

	_ "modernc.org/sqlite"
)

// A SQLite write-ahead log is a 32-byte header followed by frames, each a
// 24-byte header and one page. A frame belongs to the log's current
// generation when it carries the header's salts and its checksum chains on
// from the previous frame's; the last frame of a transaction records the
// database size in pages (non-zero), the others zero.
// https://www.sqlite.org/fileformat2.html#walformat

const (
	walHeaderSize   = 32
	frameHeaderSize = 24
)

// walCommit is one committed transaction of the log: the pages it wrote.
type walCommit struct {
	pages []uint32
}

// readWAL returns the page size and the complete transactions of the
// log's current generation, oldest first. Frames after the last commit
// frame, or past the first frame that fails its checksum (a torn write),
// are left out.
func readWAL(path string) (int, []walCommit, error) {
	wal, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	if len(wal) < walHeaderSize {
		return 0, nil, errors.New("write-ahead log shorter than its header")
	}
	var order binary.ByteOrder
	switch binary.BigEndian.Uint32(wal[0:4]) {
	case 0x377f0682:
		order = binary.LittleEndian
	case 0x377f0683:
		order = binary.BigEndian
	default:
		return 0, nil, errors.New("not a SQLite write-ahead log")
	}
	pageSize := int(binary.BigEndian.Uint32(wal[8:12]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return 0, nil, fmt.Errorf("bad page size %d", pageSize)
	}
	salt1, salt2 := binary.BigEndian.Uint32(wal[16:20]), binary.BigEndian.Uint32(wal[20:24])
	s0, s1 := walChecksum(order, wal[0:24], 0, 0)
	if s0 != binary.BigEndian.Uint32(wal[24:28]) || s1 != binary.BigEndian.Uint32(wal[28:32]) {
		return 0, nil, errors.New("write-ahead log header checksum mismatch")
	}
	var commits []walCommit
	var cur []uint32
	for off := walHeaderSize; off+frameHeaderSize+pageSize <= len(wal); off += frameHeaderSize + pageSize {
		h := wal[off : off+frameHeaderSize]
		if binary.BigEndian.Uint32(h[8:12]) != salt1 || binary.BigEndian.Uint32(h[12:16]) != salt2 {
			break // a frame of an earlier generation
		}
		s0, s1 = walChecksum(order, h[0:8], s0, s1)
		s0, s1 = walChecksum(order, wal[off+frameHeaderSize:off+frameHeaderSize+pageSize], s0, s1)
		if s0 != binary.BigEndian.Uint32(h[16:20]) || s1 != binary.BigEndian.Uint32(h[20:24]) {
			break
		}
		cur = append(cur, binary.BigEndian.Uint32(h[0:4]))
		if binary.BigEndian.Uint32(h[4:8]) != 0 {
			commits = append(commits, walCommit{pages: cur})
			cur = nil
		}
	}
	return pageSize, commits, nil
}

// walChecksum continues the log's checksum over b (a multiple of 8 bytes).
func walChecksum(order binary.ByteOrder, b []byte, s0, s1 uint32) (uint32, uint32) {
	for i := 0; i+8 <= len(b); i += 8 {
		s0 += order.Uint32(b[i:]) + s1
		s1 += order.Uint32(b[i+4:]) + s0
	}
	return s0, s1
}

// pageOwners maps each page of the database (as its readers see it now,
// log included) to the table or index it belongs to, from SQLite's dbstat
// table. Pages in no B-tree (the free list) are absent.
func pageOwners(dbPath string) (map[uint32]string, error) {
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name, pageno FROM dbstat`)
	if err != nil {
		return nil, fmt.Errorf("read dbstat: %w", err)
	}
	defer rows.Close()
	owners := map[uint32]string{}
	for rows.Next() {
		var name string
		var page uint32
		if err := rows.Scan(&name, &page); err != nil {
			return nil, err
		}
		owners[page] = name
	}
	return owners, rows.Err()
}

// treePages is one B-tree's share of the pages the commits wrote.
type treePages struct {
	Name      string  `json:"name"`
	PerCommit float64 `json:"pages_per_commit"`
	Share     float64 `json:"share"`
}

// report is what rempart-walpages prints.
type report struct {
	PageSize       int         `json:"page_size"`
	Commits        int         `json:"commits"`
	PagesPerCommit float64     `json:"pages_per_commit"`
	Trees          []treePages `json:"trees"`
}

// analyse counts the distinct pages each of the last n commits wrote, by
// B-tree (all commits when n <= 0).
func analyse(pageSize int, commits []walCommit, owners map[uint32]string, n int) report {
	if n > 0 && len(commits) > n {
		commits = commits[len(commits)-n:]
	}
	r := report{PageSize: pageSize, Commits: len(commits)}
	if len(commits) == 0 {
		return r
	}
	byTree := map[string]int{}
	total := 0
	for _, c := range commits {
		seen := map[uint32]bool{}
		for _, p := range c.pages {
			if seen[p] {
				continue // a page written twice in one transaction
			}
			seen[p] = true
			name := owners[p]
			if name == "" {
				name = "(free list or header)"
			}
			byTree[name]++
			total++
		}
	}
	r.PagesPerCommit = float64(total) / float64(len(commits))
	for name, c := range byTree {
		r.Trees = append(r.Trees, treePages{Name: name, PerCommit: float64(c) / float64(len(commits)), Share: float64(c) / float64(total)})
	}
	sort.Slice(r.Trees, func(i, j int) bool {
		if r.Trees[i].PerCommit != r.Trees[j].PerCommit {
			return r.Trees[i].PerCommit > r.Trees[j].PerCommit
		}
		return r.Trees[i].Name < r.Trees[j].Name
	})
	return r
}
