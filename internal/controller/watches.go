package controller

import (
	"context"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// secretMetadata is the metadata-only view of Secrets the controllers watch.
// Only metadata is cached, trimmed by TrimForCache, never Secret data.
func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// enqueueBySecret maps a Secret event to the resources of list's kind in the
// same namespace that name the Secret as input or output.
func enqueueBySecret(c client.Client, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{secretNamesIndex: o.GetName()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list resources for secret event", "secret", o.GetName())
			return nil
		}
		var reqs []reconcile.Request
		forEachItem(list, func(obj client.Object) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		})
		return reqs
	})
}

func forEachItem(list client.ObjectList, fn func(client.Object)) {
	switch l := list.(type) {
	case *v1alpha1.ApiKeyList:
		for i := range l.Items {
			fn(&l.Items[i])
		}
	case *v1alpha1.RevioTokenList:
		for i := range l.Items {
			fn(&l.Items[i])
		}
	}
}

// enqueueByIssuer maps an issuer to the objects depending on it.
func enqueueByIssuer(c client.Client, kind string, cluster bool, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		opts := []client.ListOption{client.MatchingFields{issuerRefsIndex: issuerKey(kind, o.GetName())}}
		if !cluster {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		list := newList()
		if err := c.List(ctx, list, opts...); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		forEachItem(list, func(obj client.Object) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		})
		return reqs
	})
}

// enqueueWaitingInNamespace maps a Namespace to the resources of list's kind
// in it that wait on their issuer's namespace selector (Issued is
// PolicyViolation): a label the platform team adds may be what they wait
// for, and nothing else would wake them.
func enqueueWaitingInNamespace(c client.Client, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(o.GetName())); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list resources for namespace event", "namespace", o.GetName())
			return nil
		}
		var reqs []reconcile.Request
		forEachItem(list, func(obj client.Object) {
			if c, ok := obj.(v1alpha1.Credential); ok && hasReason(c.GetConditions(), v1alpha1.ConditionIssued, v1alpha1.ReasonPolicyViolation) {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
			}
		})
		return reqs
	})
}

// namespaceLabelsChanged passes Namespace updates that change its labels,
// the only part of a namespace an issuer's selector reads.
func namespaceLabelsChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
		},
	}
}

// issuerChanged passes issuer events its consumers act on: creation (an
// object waiting for a missing issuer), deletion, a spec change (policy,
// org, URL), a newly checked credential version and a change of its Ready
// condition, not every status write.
func issuerChanged() predicate.Predicate {
	ready := func(o client.Object) string {
		gi, ok := o.(v1alpha1.GenericIssuer)
		if !ok {
			return ""
		}
		st := gi.IssuerStatus()
		// A new credential version checked is a change too: it lifts the
		// consumers' failures that waited for a person.
		out := st.CheckedVersion
		if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
			out += "/" + string(c.Status) + "/" + c.Reason
		}
		return out
	}
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() || ready(e.ObjectOld) != ready(e.ObjectNew)
	}}
}

// primaryPredicate lets through spec changes (generation), annotation
// changes (manual triggers) and deletions, but not our own status writes.
func primaryPredicate() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
		predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectNew.GetDeletionTimestamp().IsZero()
		}})
}
