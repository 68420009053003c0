package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The job index: index.json in the output folder lists every job the
// server keeps, so ids, prompts' previews, settings and results survive a
// restart. It is rewritten (to a temporary file, then renamed) after each
// change, by one goroutine.
const indexFile = "index.json"

type indexRecord struct {
	Video
	File string `json:"file,omitempty"`
}

type index struct {
	Version int           `json:"version"`
	Jobs    []indexRecord `json:"jobs"`
}

// load reads the index. Jobs that were queued or running when the last
// run ended are marked failed ("interrupted"); completed jobs whose file
// is gone are dropped.
func (s *Server) load() error {
	b, err := os.ReadFile(s.outPath(indexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return fmt.Errorf("server: %s: %w (move it away to start afresh)", s.outPath(indexFile), err)
	}
	for _, rec := range ix.Jobs {
		if !validID(rec.ID) || s.jobs[rec.ID] != nil {
			continue
		}
		j := &job{v: rec.Video, file: rec.File, created: time.Unix(rec.CreatedAt, 0)}
		if !terminal(j.v.Status) {
			j.v.Status, j.v.CompletedAt = statusFailed, unixPtr(time.Now())
			j.v.Error = &VideoError{Code: "interrupted", Message: "the server stopped before this job finished"}
			j.v.Stage, j.v.StageDone, j.v.StageTotal, j.v.QueuePosition = "", 0, 0, 0
		}
		if j.v.Status == statusCompleted {
			if j.file == "" || filepath.Base(j.file) != j.file {
				continue
			}
			if _, err := os.Stat(s.outPath(j.file)); err != nil {
				continue
			}
		}
		j.v.Prompt = preview(j.v.Prompt)
		s.jobs[j.v.ID] = j
		s.order = append(s.order, j)
	}
	slices.SortStableFunc(s.order, func(a, b *job) int { return int(a.v.CreatedAt - b.v.CreatedAt) })
	return nil
}

// save writes the index.
func (s *Server) save() error {
	s.mu.Lock()
	ix := index{Version: 1, Jobs: make([]indexRecord, 0, len(s.order))}
	for _, j := range s.order {
		ix.Jobs = append(ix.Jobs, indexRecord{Video: j.v, File: j.file})
	}
	s.mu.Unlock()
	b, err := json.MarshalIndent(ix, "", " ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.cfg.OutDir, "."+indexFile+".partial-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.outPath(indexFile))
	}
	if err != nil {
		os.Remove(f.Name())
		s.log.Printf("saving the job index: %v", err)
	}
	return err
}

func (s *Server) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// saver writes the index when it changes and evicts old jobs every
// minute, until Close.
func (s *Server) saver() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-s.dirty:
			s.save()
		case <-tick.C:
			s.evict()
		case <-s.ctx.Done():
			return
		}
	}
}

// evict removes finished jobs beyond Config.KeepJobs (oldest first) and
// older than Config.KeepFor, with their videos.
func (s *Server) evict() {
	s.mu.Lock()
	var finished []*job
	for _, j := range s.order {
		if terminal(j.v.Status) && j != s.running {
			finished = append(finished, j)
		}
	}
	drop := map[*job]bool{}
	for i, j := range finished {
		if len(finished)-i > s.cfg.KeepJobs {
			drop[j] = true
		}
		if s.cfg.KeepFor > 0 && j.v.CompletedAt != nil && time.Since(time.Unix(*j.v.CompletedAt, 0)) > s.cfg.KeepFor {
			drop[j] = true
		}
	}
	var files []string
	for j := range drop {
		files = append(files, s.deleteLocked(j)...)
	}
	s.mu.Unlock()
	for _, f := range files {
		os.Remove(f)
	}
	if len(drop) > 0 {
		s.log.Printf("evicted %d finished job(s)", len(drop))
		s.markDirty()
	}
}

// deleteLocked forgets a finished job and returns its files to remove.
func (s *Server) deleteLocked(j *job) []string {
	delete(s.jobs, j.v.ID)
	if i := slices.Index(s.order, j); i >= 0 {
		s.order = slices.Delete(s.order, i, i+1)
	}
	var files []string
	if j.file != "" {
		files = append(files, s.outPath(j.file))
	}
	if j.upload != "" {
		files = append(files, j.upload)
	}
	return files
}

// removePartials deletes what an interrupted run leaves in the output
// folder: the video writer's temporary files (.ID.partial-*), index
// temporaries and uploaded images of jobs no longer queued. Only names
// this server makes are touched.
func (s *Server) removePartials() {
	ents, err := os.ReadDir(s.cfg.OutDir)
	if err != nil {
		return
	}
	s.mu.Lock()
	live := map[string]bool{}
	for _, j := range s.jobs {
		if j != nil && j.upload != "" {
			live[filepath.Base(j.upload)] = true
		}
	}
	s.mu.Unlock()
	n := 0
	for _, e := range ents {
		name := e.Name()
		ours := false
		switch {
		case strings.HasPrefix(name, ".video_") && strings.Contains(name, ".partial-"):
			ours = true
		case strings.HasPrefix(name, ".video-") && strings.Contains(name, ".partial-"): // earlier servers' names
			ours = true
		case strings.HasPrefix(name, "."+indexFile+".partial-"):
			ours = true
		case strings.HasPrefix(name, "video_") && strings.Contains(name, uploadSuffix) && !live[name]:
			ours = true
		}
		if ours {
			if os.RemoveAll(s.outPath(name)) == nil {
				n++
			}
		}
	}
	if n > 0 {
		s.log.Printf("removed %d partial file(s) from %s", n, s.cfg.OutDir)
	}
}

// uploadSuffix marks an uploaded image: ID-input.png.
const uploadSuffix = "-input."

// newIDLocked makes a job id no job, file or index entry has: "video_"
// and 16 random hex digits.
func (s *Server) newIDLocked() string {
	for {
		var b [8]byte
		rand.Read(b[:])
		id := "video_" + hex.EncodeToString(b[:])
		if _, used := s.jobs[id]; used {
			continue
		}
		if m, _ := filepath.Glob(s.outPath(id + ".*")); len(m) > 0 {
			continue
		}
		return id
	}
}

func validID(id string) bool {
	rest, ok := strings.CutPrefix(id, "video_")
	if !ok || len(rest) == 0 || len(rest) > 64 {
		return false
	}
	for _, c := range rest {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
