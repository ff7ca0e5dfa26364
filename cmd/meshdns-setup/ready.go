package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// waitReady polls until the ready URL answers 200 and, unless probe is
// empty, a DNS query to probe gets a reply; it returns the last reason it
// was not ready when ctx ends.
func waitReady(ctx context.Context, readyURL, probe string) error {
	for {
		err := checkReady(ctx, readyURL)
		if err == nil && probe != "" {
			err = probeDNS(ctx, probe)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// checkReady asks CoreDNS's ready plugin once: 200 when every plugin that
// reports readiness (meshdns: its first table or snapshot) is ready, 503 with
// the names of those that are not.
func checkReady(ctx context.Context, readyURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, readyURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", readyURL, unwrapURL(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", readyURL, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// unwrapURL drops net/http's "Get URL:" prefix, the URL being in the message already.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// probeDNS sends one query (SOA of cluster.local., which the VM Corefile
// answers itself) over UDP and takes any reply to it, whatever its rcode,
// as proof that something serves DNS at addr: the address install is about
// to write into resolv.conf.
func probeDNS(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("DNS at %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	q := binary.BigEndian.AppendUint16(nil, id)
	q = append(q, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD; one question
	q = append(q, 7, 'c', 'l', 'u', 's', 't', 'e', 'r', 5, 'l', 'o', 'c', 'a', 'l', 0)
	q = append(q, 0, 6, 0, 1) // SOA, IN
	if _, err := conn.Write(q); err != nil {
		return fmt.Errorf("DNS at %s: %w", addr, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("DNS at %s: no answer: %w", addr, err)
		}
		if n >= 12 && binary.BigEndian.Uint16(buf) == id && buf[2]&0x80 != 0 {
			return nil
		}
	}
}
