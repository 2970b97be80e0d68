package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// sameFloorNS holds the objects of the same-writes floor.
const sameFloorNS = "bench-same-writes"

// sameWritesFloor is the second floor: with the manager stopped, a bare
// client makes, object by object, the very writes the operator makes on
// the create path, of the same kinds, verbs and sizes: per ApiKey a merge
// patch adding the finalizer, a status patch recording the creation, a
// server-side apply of the Secret and the status patch of the issued key;
// per RevioToken the Secret's apply and one status patch. The payloads are
// copied from the converged objects. The ConfigMap floor prices the
// cheapest write the API server has; this one prices the operator's own
// writes, so converge / this floor is what the operator adds on top of
// them. It runs last, on fresh objects created (untimed) beforehand.
func (b *bench) sameWritesFloor(ctx context.Context) error {
	cl, r := b.cl, b.res
	if err := cl.stopManager(); err != nil {
		return fmt.Errorf("stop the manager: %w", err)
	}
	if err := cl.createNamespace(ctx, sameFloorNS); err != nil {
		return err
	}
	nAK, nRT := r.nAK, r.n

	// Templates: the first converged object of each kind and its Secret.
	var akT v1alpha1.ApiKey
	var akS corev1.Secret
	if nAK > 0 {
		if err := cl.c.Get(ctx, client.ObjectKey{Namespace: cl.objNS(0), Name: apiKeyName(0)}, &akT); err != nil {
			return err
		}
		if err := cl.c.Get(ctx, client.ObjectKey{Namespace: cl.objNS(0), Name: apiKeyName(0)}, &akS); err != nil {
			return err
		}
	}
	var rtT v1alpha1.RevioToken
	var rtS corev1.Secret
	if err := cl.c.Get(ctx, client.ObjectKey{Namespace: cl.objNS(0), Name: revioTokenName(0)}, &rtT); err != nil {
		return err
	}
	if err := cl.c.Get(ctx, client.ObjectKey{Namespace: cl.objNS(0), Name: revioTokenName(0)}, &rtS); err != nil {
		return err
	}

	// The objects, created untimed.
	uids := make([]types.UID, nAK+nRT)
	b.logf("same-writes floor: creating %d ApiKeys and %d RevioTokens (manager stopped; untimed)", nAK, nRT)
	if err := pool(ctx, nAK+nRT, b.o.writers, func(ctx context.Context, i int) error {
		var obj client.Object
		if i < nAK {
			ak := cl.newApiKey(i)
			ak.Namespace = sameFloorNS
			obj = ak
		} else {
			rt := cl.newRevioToken(i - nAK)
			rt.Namespace = sameFloorNS
			obj = rt
		}
		if err := cl.c.Create(ctx, obj); err != nil {
			return err
		}
		uids[i] = obj.GetUID()
		return nil
	}); err != nil {
		return fmt.Errorf("same-writes floor: create: %w", err)
	}

	// The payloads.
	intent := v1alpha1.ApiKeyStatus{
		PendingCreate: &v1alpha1.KeyRequest{
			IdempotencyKey: fmt.Sprintf("%064d", 0), Name: akT.Namespace + "/" + akT.Name + " [kw:" + string(akT.UID) + ":1]",
			Reason: "Initial", StartedAt: metav1.Now(),
			Scopes: akT.Spec.Scopes, Issuer: akT.Status.Issuer,
		},
		KeyGeneration: 1, KeySpecHash: akT.Status.KeySpecHash, AdminKeySecretVersion: akT.Status.AdminKeySecretVersion,
		Conditions: akT.Status.Conditions,
	}
	intentPatch, err := json.Marshal(map[string]any{"status": intent})
	if err != nil {
		return err
	}
	akFinal, err := json.Marshal(map[string]any{"status": akT.Status})
	if err != nil {
		return err
	}
	rtFinal, err := json.Marshal(map[string]any{"status": rtT.Status})
	if err != nil {
		return err
	}
	finalizerPatch := []byte(`{"metadata":{"finalizers":["credentials.keywarden.dev/revoke"]}}`)
	// The operator's own Secret write (secretsync.Apply), with the data,
	// labels and annotations of a converged Secret.
	apply := func(ctx context.Context, tmpl *corev1.Secret, owner client.Object, kind string) error {
		_, err := secretsync.Apply(ctx, cl.c, nil, secretsync.Desired{
			Namespace: sameFloorNS, Name: owner.GetName(), Owner: owner,
			OwnerAPI: v1alpha1.GroupVersion.String(), OwnerKind: kind,
			Labels: tmpl.Labels, Annotations: tmpl.Annotations, Data: tmpl.Data,
		})
		return err
	}

	writes := 4*nAK + 2*nRT
	b.logf("same-writes floor: %d writes (the operator's on create) with %d writers", writes, b.o.writers)
	meter := cl.newCPUMeter()
	p0, busy0, total0 := meter.read()
	t0 := time.Now()
	err = pool(ctx, nAK+nRT, b.o.writers, func(ctx context.Context, i int) error {
		if i < nAK {
			obj := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: apiKeyName(i), Namespace: sameFloorNS, UID: uids[i]}}
			if err := cl.c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, finalizerPatch)); err != nil {
				return err
			}
			if err := cl.c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, intentPatch)); err != nil {
				return err
			}
			if err := apply(ctx, &akS, obj, "ApiKey"); err != nil {
				return err
			}
			return cl.c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, akFinal))
		}
		obj := &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Name: revioTokenName(i - nAK), Namespace: sameFloorNS, UID: uids[i]}}
		if err := apply(ctx, &rtS, obj, "RevioToken"); err != nil {
			return err
		}
		return cl.c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, rtFinal))
	})
	r.sameFloorDur = time.Since(t0)
	r.sameFloorUse = meter.since(p0, busy0, total0)
	r.sameFloorWrites = writes
	if err != nil {
		return fmt.Errorf("same-writes floor: %w", err)
	}
	b.logf("same-writes floor: %s (%.0f writes/s)", r.sameFloorDur.Round(time.Millisecond), float64(writes)/r.sameFloorDur.Seconds())
	return nil
}
